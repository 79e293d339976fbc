//! Token scanner for nginx-style configuration text.
//!
//! This mirrors `ngx_conf_read_token()` from nginx's `src/core/ngx_conf_file.c`
//! byte for byte, because users compare waypost's syntax errors (message and
//! line) with nginx's side by side. nom describes the token shapes; the state
//! nginx carries between characters (the line counter and the limits of its
//! fixed read buffer) lives in [`Lexer`].
//!
//! The scanner works on bytes, as nginx does: a config file need not be UTF-8.
//! Arguments are converted to `String` lossily once they are complete.

use nom::branch::alt;
use nom::bytes::complete::{tag, take, take_till, take_while, take_while1};
use nom::combinator::recognize;
use nom::multi::{many0_count, many1_count};
use nom::sequence::pair;
use nom::IResult;

/// Size of nginx's configuration read buffer (`NGX_CONF_BUFFER`).
///
/// nginx keeps the current token in this buffer while it reads the file, so a
/// token (or comment) that does not fit is an error there. We reproduce that,
/// so that a file accepted here is also accepted by nginx.
pub const NGX_CONF_BUFFER: usize = 4096;

/// One token, as `ngx_conf_read_token()` would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A bare or quoted word, escapes already processed, quotes removed.
    Word(String),
    Semicolon,
    OpenBrace,
    CloseBrace,
    /// End of input between tokens (a token cut short by the end is an error).
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexErrorKind {
    /// A character other than a blank, `;`, `{` or `)` right after a closing quote.
    Unexpected(char),
    /// The input ended inside a word or a quoted string. The wording depends on
    /// whether the text is a file or `-g` parameters, so the parser words it.
    UnexpectedEof,
    /// A token or comment did not fit nginx's read buffer; the full message.
    TooLong(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub kind: LexErrorKind,
    /// The line nginx reports for this error.
    pub line: u32,
}

/// Pull-style tokenizer over one file (or one `-g` string).
#[derive(Debug)]
pub struct Lexer {
    src: Vec<u8>,
    pos: usize,
    line: u32,
    /// `Some(NGX_CONF_BUFFER)` for files. `None` for `-g` parameters, which
    /// nginx scans in place without a read buffer, so any length is fine.
    buffer: Option<usize>,
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Bytes that end an unquoted word; the terminator itself is then processed.
/// Note that `}` is not among them: nginx reads `x}` as one word.
fn ends_word(c: u8) -> bool {
    is_blank(c) || c == b';' || c == b'{'
}

type Scan<'a> = IResult<&'a [u8], &'a [u8]>;

fn blanks(i: &[u8]) -> Scan<'_> {
    take_while1(is_blank)(i)
}

/// `#` to the end of the line. The newline is left for `blanks`.
fn comment(i: &[u8]) -> Scan<'_> {
    recognize(pair(tag("#"), take_till(|c| c == b'\n')))(i)
}

/// A backslash makes nginx skip the next byte whatever it is (even a newline
/// or a quote), so the pair is consumed as a unit.
fn escape_pair(i: &[u8]) -> Scan<'_> {
    recognize(pair(tag("\\"), take(1usize)))(i)
}

/// `$` followed by `{`: nginx keeps the brace in the word so that `${var}`
/// works. Its flag survives a run of braces, hence `take_while`.
fn variable_prefix(i: &[u8]) -> Scan<'_> {
    recognize(pair(tag("$"), take_while(|c| c == b'{')))(i)
}

fn plain_run(i: &[u8]) -> Scan<'_> {
    take_while1(|c| !ends_word(c) && c != b'\\' && c != b'$')(i)
}

/// An unquoted word, up to (not including) its terminator.
fn bare_word(i: &[u8]) -> Scan<'_> {
    recognize(many1_count(alt((escape_pair, variable_prefix, plain_run))))(i)
}

/// The inside of a quoted string, up to (not including) the closing quote.
fn quoted_body(quote: u8) -> impl FnMut(&[u8]) -> Scan<'_> {
    move |i| {
        let plain = take_while1(move |c| c != quote && c != b'\\');
        recognize(many0_count(alt((escape_pair, plain))))(i)
    }
}

/// nginx's escape processing, applied when a token is stored: `\"`, `\'`,
/// `\\`, `\t`, `\r`, `\n` are translated, any other `\X` is kept as is
/// (variables and regexes get their backslashes later).
pub fn unescape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied().peekable();
    while let Some(c) = bytes.next() {
        if c == b'\\' {
            let translated = match bytes.peek() {
                Some(&n @ (b'"' | b'\'' | b'\\')) => Some(n),
                Some(b't') => Some(b'\t'),
                Some(b'r') => Some(b'\r'),
                Some(b'n') => Some(b'\n'),
                _ => None,
            };
            if let Some(t) = translated {
                out.push(t);
                bytes.next();
                continue;
            }
        }
        out.push(c);
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Lexer {
    /// `buffer` is the read-buffer limit to emulate: `Some(NGX_CONF_BUFFER)`
    /// for files, `None` for `-g` parameters.
    pub fn new(src: Vec<u8>, buffer: Option<usize>) -> Lexer {
        Lexer {
            src,
            pos: 0,
            line: 1,
            buffer,
        }
    }

    /// The current line: 1 plus the newlines consumed so far. Right after a
    /// `;`, `{` or `}` token this is the line of that character.
    pub fn line(&self) -> u32 {
        self.line
    }

    pub fn next_token(&mut self) -> Result<Token, LexError> {
        self.skip_blanks_and_comments()?;
        let Some(&c) = self.rest().first() else {
            return Ok(Token::Eof);
        };
        let single = match c {
            b';' => Token::Semicolon,
            b'{' => Token::OpenBrace,
            b'}' => Token::CloseBrace,
            b'"' | b'\'' => return self.quoted(c),
            _ => return self.word(),
        };
        self.advance_to(self.pos + 1);
        Ok(single)
    }

    fn rest(&self) -> &[u8] {
        self.src.get(self.pos..).unwrap_or_default()
    }

    /// Moves to `end`, counting the newlines passed over.
    fn advance_to(&mut self, end: usize) {
        let end = end.min(self.src.len());
        let passed = self.src.get(self.pos..end).unwrap_or_default();
        let newlines = passed.iter().filter(|&&c| c == b'\n').count();
        self.line = self
            .line
            .saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
        self.pos = end;
    }

    fn error(&self, kind: LexErrorKind) -> LexError {
        LexError {
            kind,
            line: self.line,
        }
    }

    fn skip_blanks_and_comments(&mut self) -> Result<(), LexError> {
        loop {
            if let Ok((_, run)) = blanks(self.rest()) {
                self.advance_to(self.pos + run.len());
            } else if let Ok((_, text)) = comment(self.rest()) {
                let end = self.pos + text.len();
                // nginx reads the closing newline while the comment is still its
                // current token, so the newline counts towards the buffer.
                self.check_buffer(self.pos, self.line, end, None)?;
                self.advance_to(end);
            } else {
                return Ok(());
            }
        }
    }

    /// An unquoted word. The caller has ruled out blanks, `;`, `{`, `}`, `#`
    /// and quotes as the first byte.
    fn word(&mut self) -> Result<Token, LexError> {
        let start = self.pos;
        let start_line = self.line;
        let len = bare_word(self.rest()).map_or(0, |(_, w)| w.len());
        let end = start + len;
        let next = self.src.get(end).copied();
        // After a blank terminator nginx only moves its token start when it
        // reads the following byte, so that byte still counts.
        let last_read = if next.is_some_and(is_blank) {
            end + 1
        } else {
            end
        };
        self.check_buffer(start, start_line, last_read, None)?;
        match next {
            Some(c) if ends_word(c) => {
                let word = unescape(self.src.get(start..end).unwrap_or_default());
                self.advance_to(end);
                Ok(Token::Word(word))
            }
            // The input ended inside the word (possibly right after a backslash).
            _ => {
                self.advance_to(self.src.len());
                Err(self.error(LexErrorKind::UnexpectedEof))
            }
        }
    }

    /// A string in `"` or `'`. Like nginx, an empty string is still a token.
    fn quoted(&mut self, quote: u8) -> Result<Token, LexError> {
        let start_line = self.line;
        let body_start = self.pos + 1;
        let body = self.src.get(body_start..).unwrap_or_default();
        let body_len = quoted_body(quote)(body).map_or(0, |(_, b)| b.len());
        let close = body_start + body_len;
        let closed = self.src.get(close) == Some(&quote);
        let after = if closed {
            self.src.get(close + 1).copied()
        } else {
            None
        };
        let last_read = if after.is_some_and(is_blank) {
            close + 2
        } else {
            close + 1
        };
        let quote_end = if closed { close } else { self.src.len() };
        self.check_buffer(body_start, start_line, last_read, Some((quote, quote_end)))?;
        if !closed {
            self.advance_to(self.src.len());
            return Err(self.error(LexErrorKind::UnexpectedEof));
        }
        let word = unescape(self.src.get(body_start..close).unwrap_or_default());
        self.advance_to(close + 1);
        match after {
            // `)` is allowed so that `if ($a = "b")` works; it then starts a new word.
            None => Ok(Token::Word(word)),
            Some(c) if ends_word(c) || c == b')' => Ok(Token::Word(word)),
            Some(_) => Err(self.error(LexErrorKind::Unexpected(self.char_here()))),
        }
    }

    /// The character at the current position, for `unexpected "C"`.
    /// nginx prints one raw byte; we print the whole UTF-8 character.
    fn char_here(&self) -> char {
        let rest = self.rest();
        let head = rest.get(..rest.len().min(4)).unwrap_or_default();
        String::from_utf8_lossy(head)
            .chars()
            .next()
            .unwrap_or(char::REPLACEMENT_CHARACTER)
    }

    /// Emulates nginx's fixed read buffer. nginx fails when, to read the byte
    /// at `start + buffer`, it would have to keep a whole buffer of the current
    /// token, provided the file has such a byte at all (at the end of the file
    /// its end-of-file check wins). `start` is where nginx's token begins,
    /// `last_read` the last byte it reads with that token start, and `quote` the
    /// quote character and the index of its closing quote (or the input length).
    fn check_buffer(
        &self,
        start: usize,
        start_line: u32,
        last_read: usize,
        quote: Option<(u8, usize)>,
    ) -> Result<(), LexError> {
        let Some(limit) = self.buffer else {
            return Ok(());
        };
        let overflow_at = start.saturating_add(limit);
        if overflow_at > last_read || overflow_at >= self.src.len() {
            return Ok(());
        }
        let message = match quote {
            // Still inside the quotes when the buffer ran out.
            Some((q, quote_end)) if overflow_at <= quote_end => format!(
                "too long parameter, probably missing terminating \"{}\" character",
                char::from(q)
            ),
            _ => {
                let head_end = (start + 10).min(self.src.len());
                let head = self.src.get(start..head_end).unwrap_or_default();
                format!(
                    "too long parameter \"{}...\" started",
                    String::from_utf8_lossy(head)
                )
            }
        };
        Err(LexError {
            kind: LexErrorKind::TooLong(message),
            line: start_line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex_with(text: &str, buffer: Option<usize>) -> (Vec<Token>, Option<LexError>) {
        let mut lexer = Lexer::new(text.as_bytes().to_vec(), buffer);
        let mut tokens = Vec::new();
        loop {
            match lexer.next_token() {
                Ok(Token::Eof) => return (tokens, None),
                Ok(t) => tokens.push(t),
                Err(e) => return (tokens, Some(e)),
            }
        }
    }

    fn lex(text: &str) -> (Vec<Token>, Option<LexError>) {
        lex_with(text, Some(NGX_CONF_BUFFER))
    }

    fn words(text: &str) -> Vec<String> {
        let (tokens, err) = lex(text);
        assert_eq!(err, None, "unexpected error for {text:?}");
        tokens
            .into_iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(w),
                _ => None,
            })
            .collect()
    }

    fn w(s: &str) -> Token {
        Token::Word(s.to_owned())
    }

    fn err(kind: LexErrorKind, line: u32) -> Option<LexError> {
        Some(LexError { kind, line })
    }

    #[test]
    fn structure_tokens_and_words() {
        let (tokens, e) = lex("a b;\nc {\n}\n");
        assert_eq!(e, None);
        assert_eq!(
            tokens,
            vec![
                w("a"),
                w("b"),
                Token::Semicolon,
                w("c"),
                Token::OpenBrace,
                Token::CloseBrace
            ]
        );
    }

    #[test]
    fn close_brace_does_not_end_a_word() {
        assert_eq!(words("x} y;"), vec!["x}", "y"]);
        let (tokens, _) = lex("a }");
        assert_eq!(tokens, vec![w("a"), Token::CloseBrace]);
    }

    #[test]
    fn comments_only_at_token_start() {
        assert_eq!(words("a#b c; # comment ; {\nd;"), vec!["a#b", "c", "d"]);
        assert_eq!(words("#only a comment"), Vec::<String>::new());
    }

    #[test]
    fn variables_keep_their_braces() {
        assert_eq!(
            words("${var} ${arg_a}x a$b;"),
            vec!["${var}", "${arg_a}x", "a$b"]
        );
        assert_eq!(words("$${{x;"), vec!["$${{x"]);
        // An escaped `$` is not a variable, so `{` ends the word again.
        let (tokens, _) = lex("a\\${");
        assert_eq!(tokens, vec![w("a\\$"), Token::OpenBrace]);
        // A brace not right after `$` ends the word.
        let (tokens, _) = lex("$a{");
        assert_eq!(tokens, vec![w("$a"), Token::OpenBrace]);
    }

    #[test]
    fn escapes() {
        assert_eq!(
            words(r#""a\"b" 'c\'d' e\\f g\th \r\n \x \$;"#),
            vec!["a\"b", "c'd", "e\\f", "g\th", "\r\n", "\\x", "\\$"]
        );
        // A backslash protects a terminator inside a bare word, and stays.
        assert_eq!(words("a\\;b\\ c;"), vec!["a\\;b\\ c"]);
        assert_eq!(words("\\\\n;"), vec!["\\n"]);
        assert_eq!(unescape(b"end\\"), "end\\");
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(
            words(r#""" '' "a b" 'c;{}#';"#),
            vec!["", "", "a b", "c;{}#"]
        );
        assert_eq!(words("\"a\nb\";"), vec!["a\nb"]);
        // Quotes in the middle of a word are ordinary characters.
        assert_eq!(words("a\"b'c;"), vec!["a\"b'c"]);
    }

    #[test]
    fn closing_quote_must_be_followed_by_a_separator() {
        let (tokens, e) = lex("a \"b\"c;");
        assert_eq!(tokens, vec![w("a")]);
        assert_eq!(e, err(LexErrorKind::Unexpected('c'), 1));
        assert_eq!(lex("\n'a'#").1, err(LexErrorKind::Unexpected('#'), 2));
        assert_eq!(lex("\"a\"}").1, err(LexErrorKind::Unexpected('}'), 1));
        assert_eq!(lex("\"a\"é").1, err(LexErrorKind::Unexpected('é'), 1));
        let (tokens, e) = lex("\"a\"{\"b\";");
        assert_eq!(e, None);
        assert_eq!(
            tokens,
            vec![w("a"), Token::OpenBrace, w("b"), Token::Semicolon]
        );
    }

    #[test]
    fn closing_paren_after_quote_starts_a_new_word() {
        assert_eq!(words("if ($a = \"b\");"), vec!["if", "($a", "=", "b", ")"]);
        assert_eq!(words("\"b\")x;"), vec!["b", ")x"]);
    }

    #[test]
    fn end_of_input_inside_a_token() {
        assert_eq!(lex("a b").1, err(LexErrorKind::UnexpectedEof, 1));
        assert_eq!(lex("a \"b\n\n").1, err(LexErrorKind::UnexpectedEof, 3));
        assert_eq!(lex("a 'b\\'").1, err(LexErrorKind::UnexpectedEof, 1));
        assert_eq!(lex("a\\").1, err(LexErrorKind::UnexpectedEof, 1));
        assert_eq!(lex("\"").1, err(LexErrorKind::UnexpectedEof, 1));
        // Ending right after a complete quoted string or a comment is fine for the lexer.
        assert_eq!(lex("\"a\"").1, None);
        assert_eq!(lex("a; # c").1, None);
    }

    #[test]
    fn line_counting() {
        let mut lexer = Lexer::new(b"a\n#c\n\"x\ny\"\n;\\\n;".to_vec(), None);
        assert_eq!(lexer.next_token(), Ok(w("a")));
        assert_eq!(lexer.next_token(), Ok(w("x\ny")));
        assert_eq!(lexer.next_token(), Ok(Token::Semicolon));
        assert_eq!(lexer.line(), 5);
        assert_eq!(lexer.next_token(), Ok(w("\\\n")));
        assert_eq!(lexer.next_token(), Ok(Token::Semicolon));
        assert_eq!(lexer.line(), 6);
        assert_eq!(lexer.next_token(), Ok(Token::Eof));
    }

    fn too_long(message: &str, line: u32) -> Option<LexError> {
        err(LexErrorKind::TooLong(message.to_owned()), line)
    }

    #[test]
    fn buffer_overflow_in_words_and_comments() {
        // With a 16-byte buffer a 16-byte word fails once a byte after it exists.
        let long = "abcdefghijklmnop";
        assert_eq!(
            lex_with(&format!("{long};"), Some(16)).1,
            too_long("too long parameter \"abcdefghij...\" started", 1)
        );
        assert_eq!(lex_with(&format!("{}x;", &long[..14]), Some(16)).1, None);
        // A blank terminator still counts, the byte after it too.
        assert_eq!(
            lex_with("\nabcdefghijklmno \n", Some(16)).1,
            too_long("too long parameter \"abcdefghij...\" started", 2)
        );
        assert_eq!(lex_with("abcdefghijklmn \n", Some(16)).1, None);
        // At the very end of the input the end-of-file check wins.
        assert_eq!(
            lex_with(long, Some(16)).1,
            err(LexErrorKind::UnexpectedEof, 1)
        );
        // Comments count up to and including their newline.
        assert_eq!(lex_with("#bcdefghijklmno\nx;", Some(16)).1, None);
        assert_eq!(
            lex_with("#bcdefghijklmnop\n", Some(16)).1,
            too_long("too long parameter \"#bcdefghij...\" started", 1)
        );
        assert_eq!(lex_with("#bcdefghijklmnop", Some(16)).1, None);
        // Without a buffer (-g parameters) any length is fine.
        assert_eq!(lex_with(&format!("{long}{long};"), None).1, None);
    }

    #[test]
    fn buffer_overflow_in_quoted_strings() {
        assert_eq!(
            lex_with("x \"abcdefghijklmnopq\";", Some(16)).1,
            too_long(
                "too long parameter, probably missing terminating \"\"\" character",
                1
            )
        );
        assert_eq!(
            lex_with("'abcdefghijklmnopq", Some(16)).1,
            too_long(
                "too long parameter, probably missing terminating \"'\" character",
                1
            )
        );
        // Overflow right after the closing quote: nginx has left the quotes.
        assert_eq!(
            lex_with("\"abcdefghijklmno\";", Some(16)).1,
            too_long("too long parameter \"abcdefghij...\" started", 1)
        );
        assert_eq!(lex_with("\"abcdefghijklmn\";", Some(16)).1, None);
    }

    #[test]
    fn real_buffer_size() {
        let comment = format!("#{}\nx;", "a".repeat(5000));
        assert_eq!(
            lex(&comment).1,
            too_long("too long parameter \"#aaaaaaaaa...\" started", 1)
        );
        let word = format!("x {};", "b".repeat(NGX_CONF_BUFFER - 1));
        assert_eq!(lex(&word).1, None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let alphabet = b"ab$\\{}\"';#() \n\r\t\xff\xc3";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut text = Vec::new();
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            for buffer in [None, Some(4)] {
                let mut lexer = Lexer::new(text.clone(), buffer);
                while let Ok(t) = lexer.next_token() {
                    if t == Token::Eof {
                        break;
                    }
                }
            }
        }
    }
}
