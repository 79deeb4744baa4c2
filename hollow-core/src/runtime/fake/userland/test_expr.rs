//! `test` and `[`: POSIX's primaries (`-n`, `-z`, `-e`, `-f`, `-d`, `-s`, `=`, `!=`,
//! `-eq` and the other integer comparisons), `!`, `-a`, `-o` and parentheses.

use super::fs::Fs;

/// The exit status `test` gives for `args` (0 true, 1 false, 2 an error).
pub(super) fn status(args: &[String], fs: &Fs, cwd: &str) -> Result<i32, String> {
    if args.is_empty() {
        return Ok(1);
    }
    let mut parser = Parser {
        args,
        at: 0,
        fs,
        cwd,
    };
    let value = parser.or()?;
    if parser.at != args.len() {
        return Err(format!("unexpected `{}`", args[parser.at]));
    }
    Ok(i32::from(!value))
}

struct Parser<'a> {
    args: &'a [String],
    at: usize,
    fs: &'a Fs,
    cwd: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.args.get(self.at).map(String::as_str)
    }

    fn next(&mut self) -> Result<&str, String> {
        let arg = self.args.get(self.at).ok_or("argument expected")?;
        self.at += 1;
        Ok(arg)
    }

    fn or(&mut self) -> Result<bool, String> {
        let mut value = self.and()?;
        while self.peek() == Some("-o") {
            self.at += 1;
            value |= self.and()?;
        }
        Ok(value)
    }

    fn and(&mut self) -> Result<bool, String> {
        let mut value = self.not()?;
        while self.peek() == Some("-a") {
            self.at += 1;
            value &= self.not()?;
        }
        Ok(value)
    }

    fn not(&mut self) -> Result<bool, String> {
        // `[ ! ]` and `[ ! = x ]` read `!` as a string, as POSIX's argument counts say.
        if self.peek() == Some("!") && self.args.len() - self.at > 1 {
            self.at += 1;
            return Ok(!self.not()?);
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<bool, String> {
        if self.peek() == Some("(") && self.args.len() - self.at > 2 {
            self.at += 1;
            let value = self.or()?;
            if self.next()? != ")" {
                return Err("missing `)`".into());
            }
            return Ok(value);
        }
        // A binary operator next decides before a unary one here.
        if let Some(op) = self.args.get(self.at + 1).map(String::as_str)
            && is_binary(op)
            && self.args.len() - self.at >= 3
        {
            let left = self.next()?.to_string();
            self.at += 1;
            let right = self.next()?.to_string();
            return binary(&left, op, &right);
        }
        let arg = self.next()?.to_string();
        if is_unary(&arg) && self.at < self.args.len() {
            let operand = self.next()?.to_string();
            let path = super::fs::normalize(self.cwd, &operand);
            return Ok(match arg.as_str() {
                "-n" => !operand.is_empty(),
                "-z" => operand.is_empty(),
                "-e" => self.fs.is_file(&path) || self.fs.is_dir(&path),
                "-f" => self.fs.is_file(&path),
                "-d" => self.fs.is_dir(&path),
                "-s" => self.fs.read(&path).is_ok_and(|t| !t.is_empty()),
                "-r" | "-w" => self.fs.is_file(&path) || self.fs.is_dir(&path),
                "-x" => self.fs.is_dir(&path),
                _ => false,
            });
        }
        Ok(!arg.is_empty())
    }
}

fn is_unary(op: &str) -> bool {
    matches!(
        op,
        "-n" | "-z" | "-e" | "-f" | "-d" | "-s" | "-r" | "-w" | "-x"
    )
}

fn is_binary(op: &str) -> bool {
    matches!(
        op,
        "=" | "==" | "!=" | "-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge"
    )
}

fn binary(left: &str, op: &str, right: &str) -> Result<bool, String> {
    let number = |text: &str| {
        text.trim()
            .parse::<i64>()
            .map_err(|_| format!("{text}: integer expression expected"))
    };
    Ok(match op {
        "=" | "==" => left == right,
        "!=" => left != right,
        "-eq" => number(left)? == number(right)?,
        "-ne" => number(left)? != number(right)?,
        "-lt" => number(left)? < number(right)?,
        "-le" => number(left)? <= number(right)?,
        "-gt" => number(left)? > number(right)?,
        "-ge" => number(left)? >= number(right)?,
        _ => return Err(format!("{op}: unknown operator")),
    })
}
