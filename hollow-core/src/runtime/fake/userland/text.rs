//! The userland's text commands: `echo`, `printf`, `expr`, `seq`, `head`, `tail` and
//! `wc`, as busybox words their output.

use super::eval::{Io, Shell};

pub(super) fn echo(shell: &mut Shell<'_>, args: &[String], io: &Io) -> Result<i32, String> {
    let mut newline = true;
    let mut escapes = false;
    let mut words = args;
    while let Some((flag, rest)) = words.split_first() {
        match flag.as_str() {
            "-n" => newline = false,
            "-e" => escapes = true,
            "-E" => escapes = false,
            "-ne" | "-en" => (newline, escapes) = (false, true),
            _ => break,
        }
        words = rest;
    }
    let mut text = words.join(" ");
    if escapes {
        text = unescape(&text);
    }
    if newline {
        text.push('\n');
    }
    shell.write(&io.stdout, &text)?;
    Ok(0)
}

/// `\n`, `\t`, `\\` and the other escapes of `echo -e` and `printf`'s format.
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('c') => break,
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// `printf FORMAT ARGS`: `%s`, `%d`, `%i`, `%c`, `%x`, `%%`; the format is reused
/// while arguments remain, as POSIX says.
pub(super) fn printf(shell: &mut Shell<'_>, args: &[String], io: &Io) -> Result<i32, String> {
    let Some((format, mut rest)) = args.split_first() else {
        return Err("usage: printf FORMAT [ARGUMENT...]".into());
    };
    let format = unescape(format);
    let mut out = String::new();
    loop {
        let mut used = false;
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            // Flags and widths are read and dropped.
            while chars.peek().is_some_and(|c| "-+ #0123456789.".contains(*c)) {
                chars.next();
            }
            let Some(spec) = chars.next() else { break };
            if spec == '%' {
                out.push('%');
                continue;
            }
            let arg = rest.first().cloned().unwrap_or_default();
            if !rest.is_empty() {
                rest = &rest[1..];
                used = true;
            }
            match spec {
                'd' | 'i' => out.push_str(&arg.trim().parse::<i64>().unwrap_or(0).to_string()),
                'x' => out.push_str(&format!("{:x}", arg.trim().parse::<i64>().unwrap_or(0))),
                'c' => out.extend(arg.chars().next()),
                _ => out.push_str(&arg),
            }
        }
        if rest.is_empty() || !used {
            break;
        }
    }
    shell.write(&io.stdout, &out)?;
    Ok(0)
}

/// `expr` over integers and strings: `+ - * / %`, comparisons, `&` and `|`, left to
/// right within each precedence; no `:` (regular expressions).
pub(super) fn expr(shell: &mut Shell<'_>, args: &[String], io: &Io) -> Result<i32, String> {
    let value = expr_value(args)?;
    let status = i32::from(value.is_empty() || value == "0");
    shell.write(&io.stdout, &format!("{value}\n"))?;
    Ok(status)
}

fn expr_value(args: &[String]) -> Result<String, String> {
    const LEVELS: &[&[&str]] = &[
        &["|"],
        &["&"],
        &["=", "!=", "<", "<=", ">", ">="],
        &["+", "-"],
        &["*", "/", "%"],
    ];
    if args.len() == 1 {
        return Ok(args[0].clone());
    }
    for level in LEVELS {
        if let Some(at) = args.iter().rposition(|a| level.contains(&a.as_str()))
            && at > 0
            && at + 1 < args.len()
        {
            let left = expr_value(&args[..at])?;
            let right = expr_value(&args[at + 1..])?;
            let numbers = (left.parse::<i64>(), right.parse::<i64>());
            let op = args[at].as_str();
            let truth = |b: bool| if b { "1".to_string() } else { "0".to_string() };
            return Ok(match (op, numbers) {
                ("|", _) => {
                    if left.is_empty() || left == "0" {
                        right
                    } else {
                        left
                    }
                }
                ("&", _) => {
                    if left.is_empty() || left == "0" || right.is_empty() || right == "0" {
                        "0".into()
                    } else {
                        left
                    }
                }
                (cmp, (Ok(a), Ok(b))) if LEVELS[2].contains(&cmp) => truth(compare(cmp, a.cmp(&b))),
                (cmp, _) if LEVELS[2].contains(&cmp) => truth(compare(cmp, left.cmp(&right))),
                (op, (Ok(a), Ok(b))) => match op {
                    "+" => a.wrapping_add(b).to_string(),
                    "-" => a.wrapping_sub(b).to_string(),
                    "*" => a.wrapping_mul(b).to_string(),
                    "/" | "%" if b == 0 => return Err("division by zero".into()),
                    "/" => (a / b).to_string(),
                    _ => (a % b).to_string(),
                },
                _ => return Err("non-integer argument".into()),
            });
        }
    }
    Err("syntax error".into())
}

fn compare(op: &str, ordering: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op {
        "=" => ordering == Equal,
        "!=" => ordering != Equal,
        "<" => ordering == Less,
        "<=" => ordering != Greater,
        ">" => ordering == Greater,
        _ => ordering != Less,
    }
}

pub(super) fn seq(shell: &mut Shell<'_>, args: &[String], io: &Io) -> Result<i32, String> {
    let numbers: Result<Vec<i64>, _> = args.iter().map(|a| a.parse::<i64>()).collect();
    let (first, step, last) = match numbers
        .map_err(|_| "invalid number".to_string())?
        .as_slice()
    {
        [last] => (1, 1, *last),
        [first, last] => (*first, 1, *last),
        [first, step, last] if *step != 0 => (*first, *step, *last),
        _ => return Err("usage: seq [FIRST [INC]] LAST".into()),
    };
    let mut out = String::new();
    let mut value = first;
    let mut count = 0;
    while (step > 0 && value <= last) || (step < 0 && value >= last) {
        out.push_str(&format!("{value}\n"));
        value += step;
        count += 1;
        if count >= super::COMMAND_BUDGET {
            break;
        }
    }
    shell.write(&io.stdout, &out)?;
    Ok(0)
}

pub(super) fn head_tail(
    shell: &mut Shell<'_>,
    program: &str,
    args: &[String],
    io: &Io,
) -> Result<i32, String> {
    let mut count = 10usize;
    let mut file = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "-n" {
            count = rest
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or("invalid number")?;
        } else if let Some(n) = arg.strip_prefix("-n").or(arg.strip_prefix('-')) {
            count = n.parse().map_err(|_| format!("invalid option {arg}"))?;
        } else {
            file = Some(arg.clone());
        }
    }
    let text = match file {
        Some(file) => shell.fs.read(&shell.path(&file))?,
        None => io.stdin.clone(),
    };
    let lines: Vec<&str> = text.lines().collect();
    let kept = if program == "head" {
        &lines[..count.min(lines.len())]
    } else {
        &lines[lines.len().saturating_sub(count)..]
    };
    let mut out = kept.join("\n");
    if !kept.is_empty() {
        out.push('\n');
    }
    shell.write(&io.stdout, &out)?;
    Ok(0)
}

pub(super) fn wc(shell: &mut Shell<'_>, args: &[String], io: &Io) -> Result<i32, String> {
    let file = args.iter().find(|a| !a.starts_with('-'));
    let text = match file {
        Some(file) => shell.fs.read(&shell.path(file))?,
        None => io.stdin.clone(),
    };
    let value = if args.iter().any(|a| a == "-l") {
        text.matches('\n').count()
    } else if args.iter().any(|a| a == "-w") {
        text.split_whitespace().count()
    } else if args.iter().any(|a| a == "-c") {
        text.len()
    } else {
        let line = format!(
            "{} {} {}\n",
            text.matches('\n').count(),
            text.split_whitespace().count(),
            text.len()
        );
        shell.write(&io.stdout, &line)?;
        return Ok(0);
    };
    shell.write(&io.stdout, &format!("{value}\n"))?;
    Ok(0)
}
