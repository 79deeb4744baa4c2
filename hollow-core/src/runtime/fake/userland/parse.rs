//! The shell's grammar, for the subset the userland runs: lists (`;`, newlines),
//! `&&`/`||`, `!`, pipelines, simple commands with assignments and redirections, `{ }`,
//! `( )`, `if`, `while`, `until` and `for` (Shell Command Language, 2.9 Shell Commands
//! and 2.10 Shell Grammar). Anything else is [`Unsupported`].

use super::lex::{Part, RedirectKind, Token, Word};
use super::{MAX_NESTING, Unsupported};

/// Commands run one after the other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct List(pub(super) Vec<AndOr>);

/// Pipelines joined by `&&` (true) and `||` (false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AndOr {
    pub(super) first: Pipeline,
    pub(super) rest: Vec<(bool, Pipeline)>,
}

/// Commands joined by `|`, the status negated by a leading `!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pipeline {
    pub(super) negated: bool,
    pub(super) commands: Vec<Command>,
}

/// A command and the redirections written after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Command {
    pub(super) body: Body,
    pub(super) redirects: Vec<Redirect>,
}

/// What a command is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Body {
    Simple {
        assignments: Vec<(String, Word)>,
        words: Vec<Word>,
    },
    Group(List),
    Subshell(List),
    If {
        branches: Vec<(List, List)>,
        otherwise: Option<List>,
    },
    Loop {
        until: bool,
        condition: List,
        body: List,
    },
    For {
        name: String,
        items: Vec<Word>,
        body: List,
    },
}

/// `fd` redirected: to the file the target names, or to a copy of another descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Redirect {
    pub(super) fd: u8,
    pub(super) kind: RedirectKind,
    pub(super) target: Option<Word>,
}

/// Parses a whole script.
pub(super) fn script(tokens: Vec<Token>) -> Result<List, Unsupported> {
    let mut parser = Parser {
        tokens,
        at: 0,
        depth: 0,
    };
    let list = parser.list(&[])?;
    match parser.tokens.get(parser.at) {
        None => Ok(list),
        Some(token) => Err(Unsupported::new(format!("an unexpected {token:?}"))),
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Lists open around the one being parsed.
    depth: usize,
}

/// The word as a bare keyword: unquoted text alone.
fn keyword(word: &Word) -> Option<&str> {
    match word.as_slice() {
        [
            Part::Text {
                text,
                quoted: false,
            },
        ] => Some(text),
        _ => None,
    }
}

const RESERVED: &[&str] = &[
    "if", "then", "elif", "else", "fi", "do", "done", "while", "until", "for", "in", "{", "}", "!",
    "case", "esac", "function", "select",
];

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn peek_keyword(&self) -> Option<&str> {
        match self.peek() {
            Some(Token::Word(word)) => keyword(word),
            _ => None,
        }
    }

    fn skip_separators(&mut self) {
        while self.peek() == Some(&Token::Separator) {
            self.at += 1;
        }
    }

    fn expect_keyword(&mut self, expected: &str) -> Result<(), Unsupported> {
        if self.peek_keyword() == Some(expected) {
            self.at += 1;
            Ok(())
        } else {
            Err(Unsupported::new(format!("a missing `{expected}`")))
        }
    }

    /// And-or lists up to one of `ends` (a keyword in command position), a `)` or the
    /// end.
    fn list(&mut self, ends: &[&str]) -> Result<List, Unsupported> {
        if self.depth == MAX_NESTING {
            return Err(Unsupported::too_deep(MAX_NESTING));
        }
        self.depth += 1;
        let list = self.list_items(ends);
        self.depth -= 1;
        list
    }

    fn list_items(&mut self, ends: &[&str]) -> Result<List, Unsupported> {
        let mut list = List::default();
        loop {
            self.skip_separators();
            match self.peek() {
                None | Some(Token::Close) => return Ok(list),
                Some(Token::Word(word)) if keyword(word).is_some_and(|k| ends.contains(&k)) => {
                    return Ok(list);
                }
                _ => {}
            }
            list.0.push(self.and_or()?);
            match self.peek() {
                None | Some(Token::Separator | Token::Close) => {}
                Some(Token::Background) => {
                    return Err(Unsupported::new("commands run in the background (`&`)"));
                }
                Some(Token::Word(word)) if keyword(word).is_some_and(|k| ends.contains(&k)) => {}
                Some(token) => return Err(Unsupported::new(format!("an unexpected {token:?}"))),
            }
        }
    }

    fn and_or(&mut self) -> Result<AndOr, Unsupported> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        loop {
            let and = match self.peek() {
                Some(Token::And) => true,
                Some(Token::Or) => false,
                _ => return Ok(AndOr { first, rest }),
            };
            self.at += 1;
            self.skip_separators();
            rest.push((and, self.pipeline()?));
        }
    }

    fn pipeline(&mut self) -> Result<Pipeline, Unsupported> {
        let negated = self.peek_keyword() == Some("!");
        if negated {
            self.at += 1;
        }
        let mut commands = vec![self.command()?];
        while self.peek() == Some(&Token::Pipe) {
            self.at += 1;
            self.skip_separators();
            commands.push(self.command()?);
        }
        Ok(Pipeline { negated, commands })
    }

    fn command(&mut self) -> Result<Command, Unsupported> {
        let body = match (self.peek(), self.peek_keyword()) {
            (Some(Token::Open), _) => {
                self.at += 1;
                let list = self.list(&[])?;
                if self.peek() != Some(&Token::Close) {
                    return Err(Unsupported::new("a missing `)`"));
                }
                self.at += 1;
                Body::Subshell(list)
            }
            (_, Some("{")) => {
                self.at += 1;
                let list = self.list(&["}"])?;
                self.expect_keyword("}")?;
                Body::Group(list)
            }
            (_, Some("if")) => self.if_clause()?,
            (_, Some(word @ ("while" | "until"))) => {
                let until = word == "until";
                self.at += 1;
                let condition = self.list(&["do"])?;
                self.expect_keyword("do")?;
                let body = self.list(&["done"])?;
                self.expect_keyword("done")?;
                Body::Loop {
                    until,
                    condition,
                    body,
                }
            }
            (_, Some("for")) => self.for_clause()?,
            (_, Some(word)) if RESERVED.contains(&word) => {
                return Err(Unsupported::new(format!("`{word}` here")));
            }
            _ => return self.simple(),
        };
        let mut redirects = Vec::new();
        while let Some(redirect) = self.redirect()? {
            redirects.push(redirect);
        }
        Ok(Command { body, redirects })
    }

    fn if_clause(&mut self) -> Result<Body, Unsupported> {
        self.at += 1;
        let mut branches = Vec::new();
        let mut otherwise = None;
        loop {
            let condition = self.list(&["then"])?;
            self.expect_keyword("then")?;
            let body = self.list(&["elif", "else", "fi"])?;
            branches.push((condition, body));
            match self.peek_keyword() {
                Some("elif") => self.at += 1,
                Some("else") => {
                    self.at += 1;
                    otherwise = Some(self.list(&["fi"])?);
                    self.expect_keyword("fi")?;
                    break;
                }
                _ => {
                    self.expect_keyword("fi")?;
                    break;
                }
            }
        }
        Ok(Body::If {
            branches,
            otherwise,
        })
    }

    fn for_clause(&mut self) -> Result<Body, Unsupported> {
        self.at += 1;
        let name = match self.peek() {
            Some(Token::Word(word)) => keyword(word)
                .filter(|name| is_name(name))
                .ok_or_else(|| Unsupported::new("a `for` without a name"))?
                .to_string(),
            _ => return Err(Unsupported::new("a `for` without a name")),
        };
        self.at += 1;
        let mut items = Vec::new();
        self.skip_separators();
        if self.peek_keyword() == Some("in") {
            self.at += 1;
            while let Some(Token::Word(word)) = self.peek() {
                items.push(word.clone());
                self.at += 1;
            }
        } else {
            items.push(vec![Part::Param {
                name: "@".into(),
                quoted: true,
            }]);
        }
        self.skip_separators();
        self.expect_keyword("do")?;
        let body = self.list(&["done"])?;
        self.expect_keyword("done")?;
        Ok(Body::For { name, items, body })
    }

    fn redirect(&mut self) -> Result<Option<Redirect>, Unsupported> {
        let Some(Token::Redirect { fd, kind }) = self.peek().cloned() else {
            return Ok(None);
        };
        self.at += 1;
        let target = if matches!(kind, RedirectKind::Duplicate(_)) {
            None
        } else {
            match self.peek() {
                Some(Token::Word(word)) => {
                    let word = word.clone();
                    self.at += 1;
                    Some(word)
                }
                _ => return Err(Unsupported::new("a redirection without a file")),
            }
        };
        Ok(Some(Redirect { fd, kind, target }))
    }

    fn simple(&mut self) -> Result<Command, Unsupported> {
        let mut assignments = Vec::new();
        let mut words = Vec::new();
        let mut redirects = Vec::new();
        loop {
            if let Some(redirect) = self.redirect()? {
                redirects.push(redirect);
                continue;
            }
            let Some(Token::Word(word)) = self.peek() else {
                break;
            };
            let word = word.clone();
            self.at += 1;
            match assignment(&word) {
                Some(assigned) if words.is_empty() => assignments.push(assigned),
                _ => words.push(word),
            }
        }
        if assignments.is_empty() && words.is_empty() && redirects.is_empty() {
            return Err(Unsupported::new(match self.peek() {
                Some(token) => format!("an unexpected {token:?}"),
                None => "a missing command".into(),
            }));
        }
        Ok(Command {
            body: Body::Simple { assignments, words },
            redirects,
        })
    }
}

/// `NAME=value`: the name and the value's parts.
fn assignment(word: &Word) -> Option<(String, Word)> {
    let Some(Part::Text {
        text,
        quoted: false,
    }) = word.first()
    else {
        return None;
    };
    let (name, value) = text.split_once('=')?;
    if !is_name(name) {
        return None;
    }
    let mut parts = Vec::new();
    if !value.is_empty() {
        parts.push(Part::Text {
            text: value.to_string(),
            quoted: false,
        });
    }
    parts.extend(word[1..].iter().cloned());
    Some((name.to_string(), parts))
}

/// A shell name: a letter or `_`, then letters, digits and `_`.
pub(super) fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
