//! The shell's tokens: words (with their quoted and expanded parts), operators and
//! redirections, as POSIX `sh` splits a script (Shell Command Language, 2.3 Token
//! Recognition), for the subset the userland runs.

use super::{MAX_NESTING, Unsupported};

/// A piece of a word, before expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    /// Text as written; `quoted` text is not split into fields nor read as a keyword.
    Text { text: String, quoted: bool },
    /// `$NAME`, `${NAME}`, `$1`, `$?`, `$#`, `$@`, `$*`, `$$`.
    Param { name: String, quoted: bool },
    /// `${NAME:-word}` (`colon` for `:-`, else `-`), and the `=`, `+` and `?` forms.
    ParamOp {
        name: String,
        op: char,
        colon: bool,
        word: Vec<Part>,
        quoted: bool,
    },
    /// `$(( expression ))`, its text still to expand.
    Arith(Vec<Part>),
    /// `$( script )` or `` `script` ``.
    Command { script: String, quoted: bool },
}

/// A word: the parts written next to each other.
pub(super) type Word = Vec<Part>;

/// Where a redirection sends a file descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RedirectKind {
    /// `>` (and `>|`).
    Write,
    /// `>>`.
    Append,
    /// `<`.
    Read,
    /// `>&N`: a copy of another descriptor.
    Duplicate(u8),
}

/// An operator between words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    Word(Word),
    /// `;` or a newline.
    Separator,
    And,
    Or,
    Pipe,
    Background,
    Open,
    Close,
    /// `;;` (a `case` clause's end).
    CaseEnd,
    /// A redirection of descriptor `fd`; the target word follows unless it duplicates.
    Redirect {
        fd: u8,
        kind: RedirectKind,
    },
}

/// Splits a script into tokens; `#` comments are dropped.
pub(super) fn tokens(script: &str) -> Result<Vec<Token>, Unsupported> {
    let mut lexer = Lexer {
        chars: script.chars().collect(),
        at: 0,
        depth: 0,
    };
    let mut out = Vec::new();
    while let Some(token) = lexer.next_token()? {
        out.push(token);
    }
    Ok(out)
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
    /// `${...}` and `$((...))` forms open around this text.
    depth: usize,
}

impl Lexer {
    /// A lexer of `text`, a form nested in this one's.
    fn inner(&self, text: &str) -> Result<Lexer, Unsupported> {
        if self.depth == MAX_NESTING {
            return Err(Unsupported::too_deep(MAX_NESTING));
        }
        Ok(Lexer {
            chars: text.chars().collect(),
            at: 0,
            depth: self.depth + 1,
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.at + offset).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn next_token(&mut self) -> Result<Option<Token>, Unsupported> {
        loop {
            match self.peek() {
                None => return Ok(None),
                Some(' ' | '\t') => self.at += 1,
                Some('\\') if self.peek_at(1) == Some('\n') => self.at += 2,
                Some('#') => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.at += 1;
                    }
                }
                Some(_) => break,
            }
        }
        let c = self.peek().unwrap_or_default();
        let operator = match c {
            '\n' => Some(Token::Separator),
            ';' => {
                if self.peek_at(1) == Some(';') {
                    self.at += 1;
                    Some(Token::CaseEnd)
                } else {
                    Some(Token::Separator)
                }
            }
            '&' if self.peek_at(1) == Some('&') => {
                self.at += 1;
                Some(Token::And)
            }
            '&' => Some(Token::Background),
            '|' if self.peek_at(1) == Some('|') => {
                self.at += 1;
                Some(Token::Or)
            }
            '|' => Some(Token::Pipe),
            '(' => Some(Token::Open),
            ')' => Some(Token::Close),
            _ => None,
        };
        if let Some(token) = operator {
            self.at += 1;
            return Ok(Some(token));
        }
        if let Some(redirect) = self.redirect()? {
            return Ok(Some(redirect));
        }
        Ok(Some(Token::Word(self.word()?)))
    }

    /// `[N]>`, `[N]>>`, `[N]<`, `[N]>&M`, `&>` (not POSIX: refused).
    fn redirect(&mut self) -> Result<Option<Token>, Unsupported> {
        let start = self.at;
        let fd = match self.peek() {
            Some(d @ '0'..='9') if matches!(self.peek_at(1), Some('>' | '<')) => {
                self.at += 1;
                d as u8 - b'0'
            }
            Some('>') => 1,
            Some('<') => 0,
            _ => return Ok(None),
        };
        let kind = if self.eat('>') {
            if self.eat('>') {
                RedirectKind::Append
            } else if self.eat('&') {
                match self.peek() {
                    Some(d @ '0'..='9') => {
                        self.at += 1;
                        RedirectKind::Duplicate(d as u8 - b'0')
                    }
                    _ => return Err(Unsupported::new("a `>&` without a descriptor")),
                }
            } else {
                self.eat('|');
                RedirectKind::Write
            }
        } else if self.eat('<') {
            if matches!(self.peek(), Some('<' | '&' | '>')) {
                return Err(Unsupported::new("here-documents and `<&`"));
            }
            RedirectKind::Read
        } else {
            self.at = start;
            return Ok(None);
        };
        Ok(Some(Token::Redirect { fd, kind }))
    }

    fn word(&mut self) -> Result<Word, Unsupported> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let flush = |parts: &mut Vec<Part>, text: &mut String| {
            if !text.is_empty() {
                parts.push(Part::Text {
                    text: std::mem::take(text),
                    quoted: false,
                });
            }
        };
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' => break,
                '\\' => {
                    self.at += 1;
                    if let Some(next) = self.peek() {
                        self.at += 1;
                        flush(&mut parts, &mut text);
                        parts.push(Part::Text {
                            text: next.to_string(),
                            quoted: true,
                        });
                    }
                }
                '\'' => {
                    flush(&mut parts, &mut text);
                    parts.push(self.single_quoted()?);
                }
                '"' => {
                    self.at += 1;
                    flush(&mut parts, &mut text);
                    parts.extend(self.double_quoted()?);
                }
                '$' => {
                    flush(&mut parts, &mut text);
                    parts.push(self.dollar(false)?);
                }
                '`' => {
                    flush(&mut parts, &mut text);
                    parts.push(self.backquoted(false)?);
                }
                c => {
                    text.push(c);
                    self.at += 1;
                }
            }
        }
        flush(&mut parts, &mut text);
        Ok(parts)
    }

    /// `'...'`, its opening quote not yet read.
    fn single_quoted(&mut self) -> Result<Part, Unsupported> {
        self.at += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err(Unsupported::new("an unterminated `'`")),
                Some('\'') => break,
                Some(c) => text.push(c),
            }
            self.at += 1;
        }
        self.at += 1;
        Ok(Part::Text { text, quoted: true })
    }

    /// The parts of `"..."`, its opening quote read.
    fn double_quoted(&mut self) -> Result<Vec<Part>, Unsupported> {
        let mut parts = vec![Part::Text {
            text: String::new(),
            quoted: true,
        }];
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err(Unsupported::new("an unterminated `\"`")),
                Some('"') => {
                    self.at += 1;
                    break;
                }
                Some('\\') => {
                    match self.peek_at(1) {
                        Some(c @ ('$' | '`' | '"' | '\\')) => text.push(c),
                        Some('\n') => {}
                        Some(c) => {
                            text.push('\\');
                            text.push(c);
                        }
                        None => return Err(Unsupported::new("an unterminated `\"`")),
                    }
                    self.at += 2;
                }
                Some('$') => {
                    push_text(&mut parts, &mut text);
                    parts.push(self.dollar(true)?);
                }
                Some('`') => {
                    push_text(&mut parts, &mut text);
                    parts.push(self.backquoted(true)?);
                }
                Some(c) => {
                    text.push(c);
                    self.at += 1;
                }
            }
        }
        push_text(&mut parts, &mut text);
        Ok(parts)
    }

    fn dollar(&mut self, quoted: bool) -> Result<Part, Unsupported> {
        self.at += 1;
        match self.peek() {
            Some('(') if self.peek_at(1) == Some('(') => {
                self.at += 2;
                let inner = self.until_closing(2)?;
                Ok(Part::Arith(self.inner(&inner)?.arithmetic()?))
            }
            Some('(') => {
                self.at += 1;
                let script = self.until_closing(1)?;
                Ok(Part::Command { script, quoted })
            }
            Some('{') => {
                self.at += 1;
                self.braced(quoted)
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::new();
                while let Some(c) = self
                    .peek()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    name.push(c);
                    self.at += 1;
                }
                Ok(Part::Param { name, quoted })
            }
            Some(c @ ('0'..='9' | '?' | '#' | '@' | '*' | '$' | '!' | '-')) => {
                self.at += 1;
                Ok(Part::Param {
                    name: c.to_string(),
                    quoted,
                })
            }
            _ => Ok(Part::Text {
                text: "$".into(),
                quoted,
            }),
        }
    }

    /// `${...}`, its `${` read.
    fn braced(&mut self, quoted: bool) -> Result<Part, Unsupported> {
        let mut name = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || "_?#@*$!".contains(*c))
        {
            name.push(c);
            self.at += 1;
        }
        if name.is_empty() {
            return Err(Unsupported::new(
                "a `${` form other than ${NAME[:-=+?]word}",
            ));
        }
        if self.eat('}') {
            return Ok(Part::Param { name, quoted });
        }
        let colon = self.eat(':');
        let op = match self.peek() {
            Some(op @ ('-' | '=' | '+' | '?')) => op,
            _ => {
                return Err(Unsupported::new(
                    "a `${` form other than ${NAME[:-=+?]word}",
                ));
            }
        };
        self.at += 1;
        let inner = self.until_closing_brace()?;
        let word = self.inner(&inner)?.word_to_end(quoted)?;
        Ok(Part::ParamOp {
            name,
            op,
            colon,
            word,
            quoted,
        })
    }

    /// The rest of the input as one word (the word of `${NAME:-word}`), spaces kept.
    fn word_to_end(&mut self, quoted: bool) -> Result<Word, Unsupported> {
        let mut parts = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            match c {
                '$' => {
                    push_text(&mut parts, &mut text);
                    parts.push(self.dollar(quoted)?);
                }
                '"' => {
                    self.at += 1;
                    push_text(&mut parts, &mut text);
                    parts.extend(self.double_quoted()?);
                }
                '\'' if !quoted => {
                    push_text(&mut parts, &mut text);
                    parts.push(self.single_quoted()?);
                }
                c => {
                    text.push(c);
                    self.at += 1;
                }
            }
        }
        push_text(&mut parts, &mut text);
        Ok(parts)
    }

    /// An arithmetic expression's parts: its text, with `$` forms to expand.
    fn arithmetic(&mut self) -> Result<Vec<Part>, Unsupported> {
        let mut parts = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if c == '$' {
                push_text(&mut parts, &mut text);
                parts.push(self.dollar(true)?);
            } else {
                text.push(c);
                self.at += 1;
            }
        }
        push_text(&mut parts, &mut text);
        Ok(parts)
    }

    fn backquoted(&mut self, quoted: bool) -> Result<Part, Unsupported> {
        self.at += 1;
        let mut script = String::new();
        loop {
            match self.peek() {
                None => return Err(Unsupported::new("an unterminated '`'")),
                Some('`') => break,
                Some('\\') if matches!(self.peek_at(1), Some('`' | '\\' | '$')) => {
                    script.push(self.peek_at(1).unwrap_or_default());
                    self.at += 1;
                }
                Some(c) => script.push(c),
            }
            self.at += 1;
        }
        self.at += 1;
        Ok(Part::Command { script, quoted })
    }

    /// The text up to `depth` closing parentheses, nested ones and quotes kept.
    fn until_closing(&mut self, depth: usize) -> Result<String, Unsupported> {
        let text = self.until_close('(', ')')?;
        if depth == 1 || self.eat(')') {
            return Ok(text);
        }
        Err(Unsupported::new("`$((` closed by one `)`"))
    }

    /// The text up to the `}` of `${`, nested braces and quotes kept.
    fn until_closing_brace(&mut self) -> Result<String, Unsupported> {
        self.until_close('{', '}')
    }

    /// The text up to the `close` that matches an `open` already read.
    fn until_close(&mut self, open: char, close: char) -> Result<String, Unsupported> {
        let mut text = String::new();
        let mut nested = 0usize;
        let mut quote = None;
        while let Some(c) = self.peek() {
            self.at += 1;
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, c) if c == open => nested += 1,
                (None, c) if c == close && nested > 0 => nested -= 1,
                (None, c) if c == close => return Ok(text),
                _ => {}
            }
            text.push(c);
        }
        Err(Unsupported::new(format!("an unterminated `{open}`")))
    }
}

fn push_text(parts: &mut Vec<Part>, text: &mut String) {
    if !text.is_empty() {
        parts.push(Part::Text {
            text: std::mem::take(text),
            quoted: true,
        });
    }
}
