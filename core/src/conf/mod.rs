//! Configuration: text to a checked model. Knows no sockets.
//!
//! - `lexer` and `syntax`: nginx's tokenizer and the raw tree with file:line
//! - `directives`: the core's directive table
//! - `interp`: the in-order pass that checks and builds the model
//! - `model`: the checked configuration
//! - `values`: times, sizes, numbers

pub mod cache;
pub mod directives;
pub mod interp;
pub mod lexer;
pub mod model;
pub mod ocsp;
pub mod syntax;
mod tuning;
pub mod values;

use std::fmt;

use syntax::Loc;

/// A configuration error, printed the nginx way:
/// `MESSAGE in FILE:LINE`, `MESSAGE in command line`, or just `MESSAGE`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfError {
    pub message: String,
    pub loc: Option<Loc>,
}

impl ConfError {
    pub fn at(message: String, loc: Loc) -> ConfError {
        ConfError {
            message,
            loc: Some(loc),
        }
    }

    pub fn bare(message: String) -> ConfError {
        ConfError { message, loc: None }
    }
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loc {
            Some(loc) if loc.to_string() == "command line" => {
                write!(f, "{} in command line", self.message)
            }
            Some(loc) => write!(f, "{} in {}", self.message, loc),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfError {}
