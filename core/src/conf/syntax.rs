//! The raw syntax tree of nginx-style configuration files.
//!
//! This is the structure half of nginx's `ngx_conf_parse()`: statements are
//! grouped into directives and blocks, `include` is expanded in place, and the
//! first syntax error is reported with nginx's exact message and line. Nothing
//! here knows what a directive means; a later in-order pass does.
//!
//! The parser is a loop over an explicit stack (open blocks, files being read)
//! rather than recursion, so no input, however deeply nested, can exhaust the
//! call stack.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::lexer::{LexError, LexErrorKind, Lexer, Token, NGX_CONF_BUFFER};

/// The pseudo file name of `-g` parameters; nginx reports "in command line".
const COMMAND_LINE: &str = "command line";

/// nginx has no include limit (a loop ends with "Too many open files"); we
/// stop earlier with a clear message.
const MAX_INCLUDE_DEPTH: u32 = 64;

/// nginx has no nesting limit either, but the tree is recursive: dropping,
/// cloning or walking a tree nested thousands deep would overflow the stack.
/// Real configurations nest a handful of levels.
const MAX_BLOCK_DEPTH: usize = 256;

/// Where a directive or error is: file and 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<PathBuf>,
    pub line: u32,
}

impl Loc {
    fn is_command_line(&self) -> bool {
        self.file.as_path() == Path::new(COMMAND_LINE)
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_command_line() {
            f.write_str(COMMAND_LINE)
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Directive {
    pub name: String,
    /// After escape processing, quotes removed.
    pub args: Vec<String>,
    /// `Some` if the directive was terminated by `{`.
    pub block: Option<Block>,
    /// The line of the terminating `;` or `{`, which is what nginx reports.
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub items: Vec<Directive>,
    /// `false` when a syntax error cut the block short.
    pub complete: bool,
    /// The line of the closing `}` (0 when the block is incomplete): nginx
    /// reports errors found at the end of a block there. The `}` is always
    /// in the file of the opening `{`.
    pub end_line: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    /// Without the location, e.g. `unexpected "}"`.
    pub message: String,
    /// Line 0 means "no location": nginx prints the bare message (a main file
    /// that cannot be opened, a file that cannot be read).
    pub loc: Loc,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.loc.line == 0 && !self.loc.is_command_line() {
            f.write_str(&self.message)
        } else {
            write!(f, "{} in {}", self.message, self.loc)
        }
    }
}

impl std::error::Error for SyntaxError {}

#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// Top-level directives read before any error (partial blocks marked incomplete).
    pub items: Vec<Directive>,
    /// The first syntax error, if any.
    pub error: Option<SyntaxError>,
    /// Every file read, in order, each once, with its contents (for `waypost -T`).
    pub files: Vec<(PathBuf, String)>,
}

/// Parses the main configuration file (an absolute path) and its includes.
pub fn parse_file(path: &Path) -> Parsed {
    let file = Arc::new(path.to_path_buf());
    let mut parser = Parser::default();
    // The main file is opened like an include, but an open failure has no
    // location (line 0), as in nginx.
    parser.frames.push(Frame::Pending(PendingInclude {
        path: path.to_path_buf(),
        at: Loc { file, line: 0 },
        depth: 0,
    }));
    parser.run()
}

/// Parses `contents` as the main configuration file `path`, which is not
/// read: what [`parse_file`] does once the file is read. For the fuzz
/// targets (`crate::fuzzing`), whose configurations are no file.
#[doc(hidden)]
pub fn parse_contents(path: &Path, contents: Vec<u8>) -> Parsed {
    let mut parser = Parser::default();
    parser.files.push((
        path.to_path_buf(),
        String::from_utf8_lossy(&contents).into_owned(),
    ));
    parser.frames.push(Frame::Active(Source {
        lexer: Lexer::new(contents, Some(NGX_CONF_BUFFER)),
        file: Arc::new(path.to_path_buf()),
        mode: Mode::File,
        base: 0,
        depth: 0,
        args: Vec::new(),
    }));
    parser.run()
}

/// Parses configuration text that is not a file. With `loc_name` "command
/// line" it follows nginx's rules for `-g` parameters (no blocks, different
/// end-of-input message, no length limit); any other name is treated as a
/// file of that name. The text itself is not listed in `Parsed::files`.
pub fn parse_str(text: &str, loc_name: &str) -> Parsed {
    let (mode, buffer) = if loc_name == COMMAND_LINE {
        (Mode::Param, None)
    } else {
        (Mode::File, Some(NGX_CONF_BUFFER))
    };
    let mut parser = Parser::default();
    parser.frames.push(Frame::Active(Source {
        lexer: Lexer::new(text.as_bytes().to_vec(), buffer),
        file: Arc::new(PathBuf::from(loc_name)),
        mode,
        base: 0,
        depth: 0,
        args: Vec::new(),
    }));
    parser.run()
}

/// The two ways nginx feeds text to its parser; they differ in error wording
/// and in whether blocks are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    File,
    /// `-g` parameters.
    Param,
}

/// A file (or `-g` text) being read.
struct Source {
    lexer: Lexer,
    file: Arc<PathBuf>,
    mode: Mode,
    /// Blocks open when this source started. nginx parses each file as its own
    /// unit, so a `}` may not close any of these, and its end is normal.
    base: usize,
    depth: u32,
    /// Tokens of the statement being read.
    args: Vec<String>,
}

impl Source {
    fn loc(&self) -> Loc {
        Loc {
            file: Arc::clone(&self.file),
            line: self.lexer.line(),
        }
    }

    fn error_at(&self, line: u32, message: String) -> SyntaxError {
        SyntaxError {
            message,
            loc: Loc {
                file: Arc::clone(&self.file),
                line,
            },
        }
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        self.error_at(self.lexer.line(), message.into())
    }

    /// nginx's message for input ending with a statement unfinished.
    fn unfinished_message(&self) -> &'static str {
        match self.mode {
            Mode::File => "unexpected end of file, expecting \";\" or \"}\"",
            Mode::Param => "unexpected end of parameter, expecting \";\"",
        }
    }

    fn lex_error(&self, e: LexError) -> SyntaxError {
        let message = match e.kind {
            LexErrorKind::Unexpected(c) => format!("unexpected \"{c}\""),
            LexErrorKind::UnexpectedEof => self.unfinished_message().to_owned(),
            LexErrorKind::TooLong(message) => message,
        };
        self.error_at(e.line, message)
    }

    /// Takes the pending statement as (name, args); `terminator` is what ended
    /// it, for nginx's error when there is no statement.
    fn take_statement(&mut self, terminator: char) -> Result<(String, Vec<String>), SyntaxError> {
        let mut args = std::mem::take(&mut self.args).into_iter();
        match args.next() {
            Some(name) => Ok((name, args.collect())),
            None => Err(self.error(format!("unexpected \"{terminator}\""))),
        }
    }

    /// Relative include patterns are resolved against the including file's
    /// directory (waypost's documented behaviour; nginx uses its prefix).
    fn include_base(&self) -> PathBuf {
        match self.mode {
            Mode::Param => std::env::current_dir().unwrap_or_default(),
            Mode::File => self
                .file
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        }
    }
}

/// A file an `include` will read once the files before it are done.
struct PendingInclude {
    path: PathBuf,
    /// The `include` directive's loc, where open errors are reported.
    at: Loc,
    depth: u32,
}

enum Frame {
    Active(Source),
    Pending(PendingInclude),
}

/// A block whose `}` has not been read yet.
struct OpenBlock {
    name: String,
    args: Vec<String>,
    loc: Loc,
    items: Vec<Directive>,
}

impl OpenBlock {
    /// `end_line` is the line of the closing `}`, or 0 for a block cut short.
    fn into_directive(self, end_line: u32) -> Directive {
        Directive {
            name: self.name,
            args: self.args,
            block: Some(Block {
                items: self.items,
                complete: end_line != 0,
                end_line,
            }),
            loc: self.loc,
        }
    }
}

/// What to do with the current source after one token.
enum Step {
    Continue,
    SourceDone,
    Include(Vec<PendingInclude>),
}

#[derive(Default)]
struct Parser {
    top: Vec<Directive>,
    blocks: Vec<OpenBlock>,
    /// Sources being read; the last one is current.
    frames: Vec<Frame>,
    files: Vec<(PathBuf, String)>,
}

impl Parser {
    fn run(mut self) -> Parsed {
        let error = self.drive().err();
        // Blocks still open were cut short by the error; keep what they hold so
        // the semantic pass can report an earlier error first, as nginx would.
        while let Some(open) = self.blocks.pop() {
            let directive = open.into_directive(0);
            self.items().push(directive);
        }
        Parsed {
            items: self.top,
            error,
            files: self.files,
        }
    }

    fn drive(&mut self) -> Result<(), SyntaxError> {
        while let Some(frame) = self.frames.pop() {
            match frame {
                Frame::Pending(include) => {
                    let source = self.open(include)?;
                    self.frames.push(Frame::Active(source));
                }
                Frame::Active(mut source) => {
                    let token = source.lexer.next_token();
                    match self.handle(&mut source, token)? {
                        Step::Continue => self.frames.push(Frame::Active(source)),
                        Step::SourceDone => {}
                        Step::Include(files) => {
                            self.frames.push(Frame::Active(source));
                            // Reversed, so that the first file is read first.
                            self.frames
                                .extend(files.into_iter().rev().map(Frame::Pending));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The directive list new directives go to: the innermost open block's.
    fn items(&mut self) -> &mut Vec<Directive> {
        match self.blocks.last_mut() {
            Some(block) => &mut block.items,
            None => &mut self.top,
        }
    }

    fn handle(
        &mut self,
        src: &mut Source,
        token: Result<Token, LexError>,
    ) -> Result<Step, SyntaxError> {
        match token.map_err(|e| src.lex_error(e))? {
            Token::Word(word) => {
                src.args.push(word);
                Ok(Step::Continue)
            }
            Token::Semicolon => self.simple_directive(src),
            Token::OpenBrace => self.open_block(src),
            Token::CloseBrace => self.close_block(src),
            Token::Eof => self.end_of_source(src),
        }
    }

    fn simple_directive(&mut self, src: &mut Source) -> Result<Step, SyntaxError> {
        let loc = src.loc();
        let (name, args) = src.take_statement(';')?;
        if name == "include" {
            return include(src, args, loc);
        }
        self.items().push(Directive {
            name,
            args,
            block: None,
            loc,
        });
        Ok(Step::Continue)
    }

    fn open_block(&mut self, src: &mut Source) -> Result<Step, SyntaxError> {
        let loc = src.loc();
        let (name, args) = src.take_statement('{')?;
        if src.mode == Mode::Param {
            return Err(src.error("block directives are not supported in -g option"));
        }
        if name == "include" {
            return Err(src.error("directive \"include\" is not terminated by \";\""));
        }
        if self.blocks.len() >= MAX_BLOCK_DEPTH {
            return Err(src.error("too many nested blocks"));
        }
        self.blocks.push(OpenBlock {
            name,
            args,
            loc,
            items: Vec::new(),
        });
        Ok(Step::Continue)
    }

    fn close_block(&mut self, src: &mut Source) -> Result<Step, SyntaxError> {
        // `foo bar }` and a `}` with no block of this file open are both errors.
        if !src.args.is_empty() || self.blocks.len() <= src.base {
            return Err(src.error("unexpected \"}\""));
        }
        if let Some(open) = self.blocks.pop() {
            let directive = open.into_directive(src.lexer.line());
            self.items().push(directive);
        }
        Ok(Step::Continue)
    }

    fn end_of_source(&mut self, src: &mut Source) -> Result<Step, SyntaxError> {
        if !src.args.is_empty() {
            return Err(src.error(src.unfinished_message()));
        }
        if self.blocks.len() > src.base {
            return Err(src.error("unexpected end of file, expecting \"}\""));
        }
        Ok(Step::SourceDone)
    }

    /// Reads an included (or the main) file and makes it the current source.
    fn open(&mut self, include: PendingInclude) -> Result<Source, SyntaxError> {
        if include.depth > MAX_INCLUDE_DEPTH {
            return Err(SyntaxError {
                message: "include depth exceeded".to_owned(),
                loc: include.at,
            });
        }
        let contents = read_file(&include.path, &include.at)?;
        // nginx -T lists each file once, however often it is included.
        if !self.files.iter().any(|(p, _)| *p == include.path) {
            let text = String::from_utf8_lossy(&contents).into_owned();
            self.files.push((include.path.clone(), text));
        }
        Ok(Source {
            lexer: Lexer::new(contents, Some(NGX_CONF_BUFFER)),
            file: Arc::new(include.path),
            mode: Mode::File,
            base: self.blocks.len(),
            depth: include.depth,
            args: Vec::new(),
        })
    }
}

/// `include PATTERN;`: the files it names, to be read in place of it.
fn include(src: &Source, args: Vec<String>, loc: Loc) -> Result<Step, SyntaxError> {
    let [pattern] = args.as_slice() else {
        return Err(SyntaxError {
            message: "invalid number of arguments in \"include\" directive".to_owned(),
            loc,
        });
    };
    let depth = src.depth.saturating_add(1);
    let files = include_targets(pattern, &src.include_base())
        .into_iter()
        .map(|path| PendingInclude {
            path,
            at: loc.clone(),
            depth,
        })
        .collect();
    Ok(Step::Include(files))
}

/// nginx treats a pattern with `*`, `?` or `[` as a glob (sorted, zero matches
/// allowed); anything else is one file that must exist.
fn include_targets(pattern: &str, base: &Path) -> Vec<PathBuf> {
    let literal = base.join(pattern);
    if !pattern.contains(&['*', '?', '['][..]) {
        return vec![literal];
    }
    let full = if Path::new(pattern).is_absolute() || base.as_os_str().is_empty() {
        pattern.to_owned()
    } else {
        // The directory is literal text, not part of the pattern.
        let dir = glob::Pattern::escape(&base.to_string_lossy());
        format!("{}/{}", dir.trim_end_matches('/'), pattern)
    };
    // The options of libc's glob(), which nginx uses: `*` matches neither `/`
    // nor a leading dot.
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    match glob::glob_with(&full, options) {
        Ok(paths) => {
            // Unreadable directories are skipped, as glob() without GLOB_ERR does.
            let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
            // glob() sorts whole path strings bytewise (nginx runs in the C locale).
            found.sort_by(|a, b| {
                a.as_os_str()
                    .as_encoded_bytes()
                    .cmp(b.as_os_str().as_encoded_bytes())
            });
            found
        }
        // libc's glob() reads a malformed pattern (an unclosed `[`) literally.
        Err(_) if literal.exists() => vec![literal],
        Err(_) => Vec::new(),
    }
}

/// Reads a whole file, with nginx's messages: `open() "F" failed (2: No such
/// file or directory)` at the include's loc, or `pread() "F" failed (...)`
/// without a location (e.g. for a directory).
fn read_file(path: &Path, at: &Loc) -> Result<Vec<u8>, SyntaxError> {
    let failure = |call: &str, e: std::io::Error, loc: Loc| SyntaxError {
        message: format!(
            "{call}() \"{}\" failed ({})",
            path.display(),
            os_error_text(&e)
        ),
        loc,
    };
    let mut file = File::open(path).map_err(|e| failure("open", e, at.clone()))?;
    let mut contents = Vec::new();
    let no_loc = Loc {
        file: Arc::new(path.to_path_buf()),
        line: 0,
    };
    file.read_to_end(&mut contents)
        .map_err(|e| failure("pread", e, no_loc))?;
    Ok(contents)
}

/// "2: No such file or directory", as nginx prints errno and strerror().
pub(crate) fn os_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        // std appends " (os error N)" to strerror()'s text; nginx does not.
        Some(code) => {
            let suffix = format!(" (os error {code})");
            format!("{code}: {}", text.strip_suffix(&suffix).unwrap_or(&text))
        }
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("waypost-syntax-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("create dir");
            }
            fs::write(&path, text).expect("write file");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn parse(text: &str) -> Parsed {
        parse_str(text, "/etc/waypost/test.conf")
    }

    /// The first error as nginx would print it, or "ok".
    fn outcome(text: &str) -> String {
        match parse(text).error {
            Some(e) => e.to_string(),
            None => "ok".to_owned(),
        }
    }

    fn at(line: u32) -> String {
        format!("/etc/waypost/test.conf:{line}")
    }

    /// name, args and line of each directive, nested blocks flattened with a depth prefix.
    fn shape(items: &[Directive]) -> Vec<String> {
        fn walk(items: &[Directive], depth: usize, out: &mut Vec<String>) {
            for d in items {
                let mut s = format!(
                    "{}{} {:?} @{}",
                    " ".repeat(depth),
                    d.name,
                    d.args,
                    d.loc.line
                );
                if let Some(block) = &d.block {
                    s.push_str(if block.complete { " {}" } else { " {..." });
                    out.push(s);
                    walk(&block.items, depth + 1, out);
                } else {
                    out.push(s);
                }
            }
        }
        let mut out = Vec::new();
        walk(items, 0, &mut out);
        out
    }

    #[test]
    fn directives_blocks_and_locations() {
        let parsed = parse("user nobody;\nhttp {\n  server {\n    listen 80;\n  }\n}\nempty {}\n");
        assert_eq!(parsed.error, None);
        assert_eq!(
            shape(&parsed.items),
            vec![
                "user [\"nobody\"] @1",
                "http [] @2 {}",
                " server [] @3 {}",
                "  listen [\"80\"] @4",
                "empty [] @7 {}",
            ]
        );
        assert_eq!(parsed.items[0].loc.to_string(), at(1));
        assert!(parsed.files.is_empty());
    }

    #[test]
    fn blocks_know_the_line_of_their_closing_brace() {
        let parsed = parse("http {\n upstream u {\n }\n\n}\n");
        let http = parsed.items[0].block.as_ref().expect("block");
        assert_eq!((http.complete, http.end_line), (true, 5));
        let upstream = http.items[0].block.as_ref().expect("block");
        assert_eq!((upstream.complete, upstream.end_line), (true, 3));
        let cut = parse("http {\n a;\n");
        let http = cut.items[0].block.as_ref().expect("block");
        assert_eq!((http.complete, http.end_line), (false, 0));
    }

    #[test]
    fn multi_line_directive_is_located_at_its_terminator() {
        let parsed = parse("log_format main\n  '$remote_addr'\n  \"$status\"\n  ;\nserver\n\n{\n}");
        assert_eq!(parsed.error, None);
        assert_eq!(
            shape(&parsed.items),
            vec![
                "log_format [\"main\", \"$remote_addr\", \"$status\"] @4",
                "server [] @7 {}",
            ]
        );
    }

    #[test]
    fn words_escapes_and_comments() {
        let parsed = parse(concat!(
            "set $a ${var}x; # comment ; {\n",
            "rewrite ^(.*)$ /x} '' \"\" a#b;\n",
            "return 200 \"a\\\"b\\n\\d\";\n",
        ));
        assert_eq!(parsed.error, None);
        assert_eq!(
            shape(&parsed.items),
            vec![
                "set [\"$a\", \"${var}x\"] @1",
                "rewrite [\"^(.*)$\", \"/x}\", \"\", \"\", \"a#b\"] @2",
                "return [\"200\", \"a\\\"b\\n\\\\d\"] @3",
            ]
        );
    }

    #[test]
    fn syntax_errors_with_nginx_lines() {
        let cases = [
            ("a;\n;", "unexpected \";\"", 2),
            ("a;\n\n{", "unexpected \"{\"", 3),
            ("http {\n foo bar }\n}", "unexpected \"}\"", 2),
            ("a;\n}\n", "unexpected \"}\"", 2),
            ("a \"b\"c;", "unexpected \"c\"", 1),
            (
                "a \n'b'\n\n#",
                "unexpected end of file, expecting \";\" or \"}\"",
                4,
            ),
            ("http {\n", "unexpected end of file, expecting \"}\"", 2),
            (
                "http {\n a b",
                "unexpected end of file, expecting \";\" or \"}\"",
                2,
            ),
            (
                "a \"b;\n\n",
                "unexpected end of file, expecting \";\" or \"}\"",
                3,
            ),
            (
                "a 'b\\'",
                "unexpected end of file, expecting \";\" or \"}\"",
                1,
            ),
            (
                "include a b;",
                "invalid number of arguments in \"include\" directive",
                1,
            ),
            (
                "include;",
                "invalid number of arguments in \"include\" directive",
                1,
            ),
            (
                "\ninclude a {",
                "directive \"include\" is not terminated by \";\"",
                2,
            ),
        ];
        for (text, message, line) in cases {
            assert_eq!(
                outcome(text),
                format!("{message} in {}", at(line)),
                "for {text:?}"
            );
        }
    }

    #[test]
    fn too_long_token_in_a_file() {
        let text = format!("a;\n#{}\nb;", "x".repeat(NGX_CONF_BUFFER));
        assert_eq!(
            outcome(&text),
            format!("too long parameter \"#xxxxxxxxx...\" started in {}", at(2))
        );
    }

    #[test]
    fn partial_tree_after_error_in_nested_block() {
        let parsed = parse("a;\nhttp {\n server {\n  listen 80;\n  root /x }\n }\n}\nafter;\n");
        let error = parsed.error.expect("error");
        assert_eq!(error.to_string(), format!("unexpected \"}}\" in {}", at(5)));
        assert_eq!(
            shape(&parsed.items),
            vec![
                "a [] @1",
                "http [] @2 {...",
                " server [] @3 {...",
                "  listen [\"80\"] @4",
            ]
        );
    }

    #[test]
    fn deep_nesting_does_not_exhaust_the_stack() {
        let text = "a {\n".repeat(200_000);
        let parsed = parse(&text);
        let error = parsed.error.expect("error");
        assert_eq!(
            error.to_string(),
            format!("too many nested blocks in {}", at(257))
        );
        let fits = format!(
            "{}{}",
            "a {".repeat(MAX_BLOCK_DEPTH),
            "}".repeat(MAX_BLOCK_DEPTH)
        );
        assert_eq!(parse(&fits).error, None);
    }

    #[test]
    fn command_line_parameters() {
        let parsed = parse_str("daemon off; worker_processes 2;", "command line");
        assert_eq!(parsed.error, None);
        assert_eq!(parsed.items.len(), 2);
        assert_eq!(parsed.items[1].loc.to_string(), "command line");
        let cases = [
            ("daemon off", "unexpected end of parameter, expecting \";\""),
            (
                "events {}",
                "block directives are not supported in -g option",
            ),
            ("daemon off; }", "unexpected \"}\""),
            ("\"a\"b;", "unexpected \"b\""),
        ];
        for (text, message) in cases {
            let error = parse_str(text, "command line").error.expect("error");
            assert_eq!(
                error.to_string(),
                format!("{message} in command line"),
                "for {text:?}"
            );
        }
        // No read buffer there, so long parameters are fine.
        let long = format!("env {};", "x".repeat(2 * NGX_CONF_BUFFER));
        assert_eq!(parse_str(&long, "command line").error, None);
    }

    #[test]
    fn include_glob_relative_and_sorted() {
        let dir = TempDir::new("glob");
        let main = dir.write(
            "main.conf",
            "a;\nhttp {\n include conf.d/*.conf;\n include none/*.conf;\n}\nz;\n",
        );
        dir.write("conf.d/b.conf", "b 1;\n");
        dir.write(
            "conf.d/a.conf",
            "\n\na 1;\nserver {\n include ../leaf;\n}\n",
        );
        dir.write("conf.d/.hidden.conf", "hidden;\n");
        dir.write("conf.d/c.txt", "c;\n");
        dir.write("leaf", "leaf;");
        let parsed = parse_file(&main);
        assert_eq!(parsed.error, None);
        assert_eq!(
            shape(&parsed.items),
            vec![
                "a [] @1",
                "http [] @2 {}",
                " a [\"1\"] @3",
                " server [] @4 {}",
                "  leaf [] @1",
                " b [\"1\"] @1",
                "z [] @6",
            ]
        );
        let http = parsed.items[1].block.as_ref().expect("block");
        assert_eq!(*http.items[0].loc.file, dir.0.join("conf.d/a.conf"));
        let files: Vec<_> = parsed.files.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            files,
            vec![
                main,
                dir.0.join("conf.d/a.conf"),
                dir.0.join("conf.d/../leaf"),
                dir.0.join("conf.d/b.conf")
            ]
        );
        assert_eq!(parsed.files[3].1, "b 1;\n");
    }

    #[test]
    fn include_missing_file() {
        let dir = TempDir::new("missing");
        let main = dir.write("main.conf", "a;\n\ninclude missing.conf;\nb;\n");
        let parsed = parse_file(&main);
        let error = parsed.error.expect("error");
        let missing = dir.0.join("missing.conf");
        assert_eq!(
            error.message,
            format!(
                "open() \"{}\" failed (2: No such file or directory)",
                missing.display()
            )
        );
        assert_eq!(
            error.loc,
            Loc {
                file: Arc::new(main.clone()),
                line: 3
            }
        );
        assert_eq!(shape(&parsed.items), vec!["a [] @1"]);

        let parsed = parse_file(&dir.0.join("nonexistent.conf"));
        let error = parsed.error.expect("error");
        assert_eq!(error.loc.line, 0);
        assert_eq!(
            error.to_string(),
            format!(
                "open() \"{}\" failed (2: No such file or directory)",
                dir.0.join("nonexistent.conf").display()
            )
        );
        assert!(parsed.files.is_empty());
    }

    #[test]
    fn include_of_a_directory_fails_to_read() {
        let dir = TempDir::new("directory");
        let main = dir.write("main.conf", "include sub;\n");
        fs::create_dir_all(dir.0.join("sub")).expect("mkdir");
        let error = parse_file(&main).error.expect("error");
        assert_eq!(
            error.message,
            format!(
                "pread() \"{}\" failed (21: Is a directory)",
                dir.0.join("sub").display()
            )
        );
        assert_eq!(error.loc.line, 0);
    }

    #[test]
    fn errors_inside_included_files() {
        let dir = TempDir::new("inner");
        let main = dir.write("main.conf", "http {\n include inc.conf;\n}\n");
        let inc = dir.write("inc.conf", "ok;\nbad \"x\"y;\n");
        let parsed = parse_file(&main);
        let error = parsed.error.expect("error");
        assert_eq!(
            error.to_string(),
            format!("unexpected \"y\" in {}:2", inc.display())
        );
        assert_eq!(shape(&parsed.items), vec!["http [] @1 {...", " ok [] @1"]);
        assert_eq!(parsed.files.len(), 2);

        // An included file is its own unit: it cannot close the including block,
        // and its end (with no block of its own open) is normal.
        dir.write("inc.conf", "ok;\n}\n");
        let error = parse_file(&main).error.expect("error");
        assert_eq!(
            error.to_string(),
            format!("unexpected \"}}\" in {}:2", inc.display())
        );

        dir.write("inc.conf", "server {\n");
        let error = parse_file(&main).error.expect("error");
        assert_eq!(
            error.to_string(),
            format!(
                "unexpected end of file, expecting \"}}\" in {}:2",
                inc.display()
            )
        );
    }

    #[test]
    fn include_recursion_is_bounded() {
        let dir = TempDir::new("recursion");
        let main = dir.write("main.conf", "a;\ninclude main.conf;\n");
        let parsed = parse_file(&main);
        let error = parsed.error.expect("error");
        assert_eq!(error.message, "include depth exceeded");
        assert_eq!(
            error.loc,
            Loc {
                file: Arc::new(main),
                line: 2
            }
        );
        assert_eq!(
            parsed.items.len(),
            usize::try_from(MAX_INCLUDE_DEPTH).unwrap_or(0) + 1
        );
        assert_eq!(parsed.files.len(), 1);
    }

    #[test]
    fn display_formats() {
        let loc = Loc {
            file: Arc::new(PathBuf::from("/a.conf")),
            line: 3,
        };
        assert_eq!(loc.to_string(), "/a.conf:3");
        let error = SyntaxError {
            message: "m".to_owned(),
            loc: Loc { line: 0, ..loc },
        };
        assert_eq!(error.to_string(), "m");
    }
}
