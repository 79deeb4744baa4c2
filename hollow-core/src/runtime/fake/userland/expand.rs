//! Word expansion (Shell Command Language, 2.6): parameters and their `${NAME:-word}`
//! forms, command substitution and arithmetic, then field splitting.

use super::eval::{Io, Shell, Sink, Stop};
use super::lex::{Part, Word};
use super::{Unsupported, arith};

impl Shell<'_> {
    /// A word expanded to one string (assignments, redirections).
    pub(super) fn expand_one(&mut self, word: &Word, io: &Io) -> Result<String, Stop> {
        Ok(self.expand(word, false, io)?.join(" "))
    }

    /// A word's fields: parameters, command substitutions and arithmetic expanded,
    /// unquoted expansions split at whitespace when `split` (no pathname expansion).
    pub(super) fn expand(
        &mut self,
        word: &Word,
        split: bool,
        io: &Io,
    ) -> Result<Vec<String>, Stop> {
        self.nested(|shell| shell.expand_fields(word, split, io))
    }

    fn expand_fields(&mut self, word: &Word, split: bool, io: &Io) -> Result<Vec<String>, Stop> {
        let mut fields: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut started = false;
        for part in word {
            let (value, quoted) = match part {
                Part::Text { text, quoted } => {
                    current.push_str(text);
                    started |= *quoted || !text.is_empty();
                    continue;
                }
                Part::Param { name, quoted } if name == "@" && *quoted && split => {
                    let args = self.args[1..].to_vec();
                    for (index, arg) in args.into_iter().enumerate() {
                        if index > 0 {
                            fields.push(std::mem::take(&mut current));
                        }
                        current.push_str(&arg);
                        started = true;
                    }
                    continue;
                }
                Part::Param { name, quoted } => (self.param(name), *quoted),
                Part::ParamOp {
                    name,
                    op,
                    colon,
                    word,
                    quoted,
                } => (self.param_op(name, *op, *colon, word, io)?, *quoted),
                Part::Arith(parts) => {
                    let text = self.expand_one(parts, io)?;
                    match arith::evaluate(&text, &mut self.vars) {
                        Ok(value) => (value.to_string(), true),
                        Err(message) => {
                            self.write(&io.stderr, &format!("sh: {message}\n")).ok();
                            return Err(Stop::Exit(2));
                        }
                    }
                }
                Part::Command { script, quoted } => (self.substitute(script, io)?, *quoted),
            };
            if quoted || !split {
                current.push_str(&value);
                started = true;
                continue;
            }
            let starts_blank = value.starts_with(char::is_whitespace);
            let ends_blank = value.ends_with(char::is_whitespace);
            let mut pieces = value.split_whitespace().peekable();
            if starts_blank && started {
                fields.push(std::mem::take(&mut current));
                started = false;
            }
            while let Some(piece) = pieces.next() {
                current.push_str(piece);
                started = true;
                if pieces.peek().is_some() {
                    fields.push(std::mem::take(&mut current));
                }
            }
            if ends_blank && started {
                fields.push(std::mem::take(&mut current));
                started = false;
            }
        }
        if started || !split {
            fields.push(current);
        }
        Ok(fields)
    }

    fn param(&self, name: &str) -> String {
        match name {
            "?" => self.status.to_string(),
            "#" => (self.args.len() - 1).to_string(),
            "@" | "*" => self.args[1..].join(" "),
            "$" => "1".into(),
            "!" | "-" => String::new(),
            _ => match name.parse::<usize>() {
                Ok(index) => self.args.get(index).cloned().unwrap_or_default(),
                Err(_) => self.vars.get(name).cloned().unwrap_or_default(),
            },
        }
    }

    fn param_op(
        &mut self,
        name: &str,
        op: char,
        colon: bool,
        word: &Word,
        io: &Io,
    ) -> Result<String, Stop> {
        let value = self.vars.get(name).cloned().or_else(|| {
            let value = self.param(name);
            (!value.is_empty() || name.parse::<usize>().is_ok_and(|i| i < self.args.len()))
                .then_some(value)
        });
        let set = match &value {
            Some(v) => !(colon && v.is_empty()),
            None => false,
        };
        Ok(match op {
            '-' if set => value.unwrap_or_default(),
            '-' => self.expand_one(word, io)?,
            '=' if set => value.unwrap_or_default(),
            '=' => {
                let value = self.expand_one(word, io)?;
                self.vars.insert(name.to_string(), value.clone());
                value
            }
            '+' if set => self.expand_one(word, io)?,
            '+' => String::new(),
            _ if set => value.unwrap_or_default(),
            _ => {
                let message = self.expand_one(word, io)?;
                let message = if message.is_empty() {
                    "parameter not set".into()
                } else {
                    message
                };
                self.write(&io.stderr, &format!("sh: {name}: {message}\n"))
                    .ok();
                return Err(Stop::Exit(2));
            }
        })
    }

    /// `$(script)`: what it prints, trailing newlines removed.
    fn substitute(&mut self, script: &str, io: &Io) -> Result<String, Stop> {
        let list = match super::parse_script(script) {
            Ok(list) => list,
            Err(Unsupported(why)) => return Err(Stop::Forever(Some(why))),
        };
        self.captures.push(String::new());
        let inner = Io {
            stdin: String::new(),
            stdout: Sink::Capture,
            stderr: io.stderr.clone(),
        };
        let saved = (self.vars.clone(), self.args.clone(), self.cwd.clone());
        let result = self.run_list(&list, &inner);
        (self.vars, self.args, self.cwd) = saved;
        let output = self.captures.pop().unwrap_or_default();
        match result {
            Ok(status) | Err(Stop::Exit(status)) => self.status = status,
            Err(stop) => return Err(stop),
        }
        Ok(output.trim_end_matches('\n').to_string())
    }
}
