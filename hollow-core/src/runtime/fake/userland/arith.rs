//! `$(( ))` arithmetic, as POSIX `sh` defines it (Shell Command Language, 2.6.4
//! Arithmetic Expansion): signed 64-bit integers, C's operators and precedence,
//! variables by name, `=` and the compound assignments.

use std::collections::BTreeMap;

/// Evaluates `text` (its `$` forms already expanded), reading and assigning `vars`.
pub(super) fn evaluate(text: &str, vars: &mut BTreeMap<String, String>) -> Result<i64, String> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        depth: 0,
        vars,
    };
    let value = parser.ternary()?;
    match parser.tokens.get(parser.at) {
        None => Ok(value),
        Some(token) => Err(format!("arithmetic syntax error near `{token}`")),
    }
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    const OPERATORS: &[&str] = &[
        "<<=", ">>=", "**", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "+=", "-=", "*=", "/=",
        "%=", "&=", "|=", "^=", "+", "-", "*", "/", "%", "<", ">", "=", "&", "|", "^", "!", "~",
        "(", ")", "?", ":",
    ];
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let c = rest.chars().next().unwrap_or_default();
        let len = if c.is_ascii_alphanumeric() || c == '_' {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())
        } else if let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) {
            op.len()
        } else {
            return Err(format!("arithmetic syntax error near `{c}`"));
        };
        tokens.push(rest[..len].to_string());
        rest = rest[len..].trim_start();
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<String>,
    at: usize,
    /// Operands open around the one being parsed.
    depth: usize,
    vars: &'a mut BTreeMap<String, String>,
}

/// `=` and the compound assignments.
const ASSIGNMENTS: &[&str] = &[
    "=", "+=", "-=", "*=", "/=", "%=", "<<=", ">>=", "&=", "|=", "^=",
];

/// Binary operators by precedence, loosest first.
const LEVELS: &[&[&str]] = &[
    &["||"],
    &["&&"],
    &["|"],
    &["^"],
    &["&"],
    &["==", "!="],
    &["<", "<=", ">", ">="],
    &["<<", ">>"],
    &["+", "-"],
    &["*", "/", "%"],
];

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    /// `parse` one level deeper: parentheses, prefix operators, `**` and `?:` nest.
    fn nested(&mut self, parse: fn(&mut Self) -> Result<i64, String>) -> Result<i64, String> {
        if self.depth == super::MAX_NESTING {
            return Err(format!(
                "arithmetic nested deeper than {} levels",
                super::MAX_NESTING
            ));
        }
        self.depth += 1;
        let value = parse(self);
        self.depth -= 1;
        value
    }

    fn ternary(&mut self) -> Result<i64, String> {
        if let (Some(name), Some(op)) = (self.tokens.get(self.at), self.tokens.get(self.at + 1))
            && is_variable(name)
            && ASSIGNMENTS.contains(&op.as_str())
        {
            let (name, op) = (name.clone(), op.clone());
            self.at += 2;
            let value = self.nested(Self::ternary)?;
            let value = if op == "=" {
                value
            } else {
                binary(&op[..op.len() - 1], self.variable(&name)?, value)?
            };
            self.vars.insert(name, value.to_string());
            return Ok(value);
        }
        let condition = self.binary(0)?;
        if self.peek() != Some("?") {
            return Ok(condition);
        }
        self.at += 1;
        let yes = self.nested(Self::ternary)?;
        if self.peek() != Some(":") {
            return Err("arithmetic syntax error: `?` without `:`".into());
        }
        self.at += 1;
        let no = self.nested(Self::ternary)?;
        Ok(if condition != 0 { yes } else { no })
    }

    fn binary(&mut self, level: usize) -> Result<i64, String> {
        if level == LEVELS.len() {
            return self.power();
        }
        let mut left = self.binary(level + 1)?;
        while let Some(op) = self.peek().filter(|op| LEVELS[level].contains(op)) {
            let op = op.to_string();
            self.at += 1;
            let right = self.binary(level + 1)?;
            left = binary(&op, left, right)?;
        }
        Ok(left)
    }

    fn power(&mut self) -> Result<i64, String> {
        let base = self.unary()?;
        if self.peek() == Some("**") {
            self.at += 1;
            let exponent = self.nested(Self::power)?;
            return binary("**", base, exponent);
        }
        Ok(base)
    }

    fn unary(&mut self) -> Result<i64, String> {
        match self.peek() {
            Some("-") => {
                self.at += 1;
                Ok(self.nested(Self::unary)?.wrapping_neg())
            }
            Some("+") => {
                self.at += 1;
                self.nested(Self::unary)
            }
            Some("!") => {
                self.at += 1;
                Ok(i64::from(self.nested(Self::unary)? == 0))
            }
            Some("~") => {
                self.at += 1;
                Ok(!self.nested(Self::unary)?)
            }
            Some("(") => {
                self.at += 1;
                let value = self.nested(Self::ternary)?;
                if self.peek() != Some(")") {
                    return Err("arithmetic syntax error: missing `)`".into());
                }
                self.at += 1;
                Ok(value)
            }
            Some(token) => {
                let token = token.to_string();
                self.at += 1;
                if is_variable(&token) {
                    self.variable(&token)
                } else {
                    number(&token)
                }
            }
            None => Err("arithmetic syntax error: operand expected".into()),
        }
    }

    /// A variable's value as a number: unset or empty is 0.
    fn variable(&self, name: &str) -> Result<i64, String> {
        match self.vars.get(name).map(|v| v.trim()) {
            None | Some("") => Ok(0),
            Some(value) => number(value),
        }
    }
}

fn is_variable(token: &str) -> bool {
    super::parse::is_name(token)
}

/// A decimal, octal (`0` prefix) or hexadecimal (`0x`) constant.
fn number(text: &str) -> Result<i64, String> {
    let (digits, radix) = if let Some(hex) = text.strip_prefix("0x").or(text.strip_prefix("0X")) {
        (hex, 16)
    } else if text.len() > 1 && text.starts_with('0') {
        (&text[1..], 8)
    } else {
        (text, 10)
    };
    let (digits, negative) = match digits.strip_prefix('-') {
        Some(d) => (d, true),
        None => (digits, false),
    };
    i64::from_str_radix(digits, radix)
        .map(|v| if negative { -v } else { v })
        .map_err(|_| format!("arithmetic syntax error: invalid number `{text}`"))
}

fn binary(op: &str, a: i64, b: i64) -> Result<i64, String> {
    Ok(match op {
        "||" => i64::from(a != 0 || b != 0),
        "&&" => i64::from(a != 0 && b != 0),
        "|" => a | b,
        "^" => a ^ b,
        "&" => a & b,
        "==" => i64::from(a == b),
        "!=" => i64::from(a != b),
        "<" => i64::from(a < b),
        "<=" => i64::from(a <= b),
        ">" => i64::from(a > b),
        ">=" => i64::from(a >= b),
        "<<" => a.wrapping_shl(u32::try_from(b).unwrap_or(0)),
        ">>" => a.wrapping_shr(u32::try_from(b).unwrap_or(0)),
        "+" => a.wrapping_add(b),
        "-" => a.wrapping_sub(b),
        "*" => a.wrapping_mul(b),
        "/" | "%" if b == 0 => return Err("arithmetic: division by zero".into()),
        "/" => a.wrapping_div(b),
        "%" => a.wrapping_rem(b),
        "**" => a.wrapping_pow(u32::try_from(b).map_err(|_| "arithmetic: negative exponent")?),
        _ => return Err(format!("arithmetic: unknown operator `{op}`")),
    })
}
