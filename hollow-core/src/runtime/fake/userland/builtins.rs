//! The commands the userland knows, as busybox words their output and errors. A
//! command it does not know is a program outside the userland: the container runs it
//! until stopped ([`Stop::Forever`]).

use std::time::Duration;

use super::eval::{Io, Shell, Stop};
use super::test_expr;
use super::text::{echo, expr, head_tail, printf, seq, wc};

/// The shells whose `-c` scripts run in the userland.
pub(super) const SHELLS: &[&str] = &["sh", "bash", "ash", "dash"];

/// Runs one command, its words expanded.
pub(super) fn run(shell: &mut Shell<'_>, argv: &[String], io: &Io) -> Result<i32, Stop> {
    let program = argv[0].rsplit('/').next().unwrap_or_default();
    let args = &argv[1..];
    let result = match program {
        ":" | "true" | "wait" | "trap" | "readonly" => Ok(0),
        "false" => Ok(1),
        "exit" => {
            let code = match args.first() {
                Some(code) => code.parse::<i32>().map(|c| c & 0xff).unwrap_or(2),
                None => shell.status,
            };
            return Err(Stop::Exit(code));
        }
        "echo" => echo(shell, args, io),
        "printf" => printf(shell, args, io),
        "sleep" => return sleep(shell, args, io),
        "test" => test(shell, args, io),
        "[" => match args.split_last() {
            Some((last, rest)) if last == "]" => test(shell, rest, io),
            _ => shell.write(&io.stderr, "sh: missing ]\n").map(|()| 2),
        },
        "cat" => cat(shell, args, io),
        "touch" => each_path(shell, program, args, io, |shell, path| {
            if shell.fs.is_file(path) || shell.fs.is_dir(path) {
                Ok(())
            } else {
                shell.fs.write(path, "", true)
            }
        }),
        "rm" => {
            let force = args.iter().any(|a| a.starts_with('-') && a.contains('f'));
            let recursive = args
                .iter()
                .any(|a| a.starts_with('-') && a.contains(['r', 'R']));
            each_path(shell, program, args, io, |shell, path| {
                match shell.fs.remove(path, recursive) {
                    // -f quiets only a missing path, as rm(1) does.
                    Err(e) if force && e.ends_with("No such file or directory") => Ok(()),
                    other => other,
                }
            })
        }
        "mkdir" => {
            let parents = args.iter().any(|a| a == "-p");
            each_path(shell, program, args, io, |shell, path| {
                shell.fs.mkdir(path, parents)
            })
        }
        "mv" | "cp" => copy(shell, program, args),
        "ls" => ls(shell, args, io),
        "env" | "printenv" => return env(shell, program, args, io),
        "hostname" => {
            let name = format!("{}\n", shell.hostname);
            shell.write(&io.stdout, &name).map(|()| 0)
        }
        "export" => {
            for arg in args {
                match arg.split_once('=') {
                    Some((name, value)) => {
                        shell.vars.insert(name.to_string(), value.to_string());
                        shell.exported.insert(name.to_string());
                    }
                    None => {
                        shell.exported.insert(arg.clone());
                    }
                }
            }
            Ok(0)
        }
        "unset" => {
            for arg in args {
                shell.vars.remove(arg);
                shell.exported.remove(arg);
            }
            Ok(0)
        }
        "set" => set(shell, args),
        "cd" => {
            let target = shell.path(args.first().map_or("/root", String::as_str));
            if shell.fs.is_dir(&target) {
                shell.cwd = target;
                Ok(0)
            } else {
                Err(format!(
                    "cd: can't cd to {}",
                    args.first().map_or("", String::as_str)
                ))
            }
        }
        "pwd" => {
            let cwd = format!("{}\n", shell.cwd);
            shell.write(&io.stdout, &cwd).map(|()| 0)
        }
        "expr" => expr(shell, args, io),
        "seq" => seq(shell, args, io),
        "tail" if args.iter().any(|a| a == "-f" || a == "-F") => return Err(Stop::Forever(None)),
        "head" | "tail" => head_tail(shell, program, args, io),
        "wc" => wc(shell, args, io),
        "exec" if args.is_empty() => Ok(0),
        "exec" => {
            let status = run(shell, args, io)?;
            return Err(Stop::Exit(status));
        }
        shell_name if SHELLS.contains(&shell_name) => return nested_shell(shell, args, io),
        _ if shell.programs.is_some_and(|p| p.contains_key(program)) => {
            let output = shell.programs.and_then(|p| p.get(program)).cloned();
            let output = output.unwrap_or_default();
            shell.write(&io.stdout, &output.stdout).ok();
            shell.write(&io.stderr, &output.stderr).ok();
            return Ok(output.exit_code);
        }
        _ if shell.exec_mode => {
            shell
                .write(&io.stderr, &format!("sh: {}: not found\n", argv[0]))
                .ok();
            return Ok(127);
        }
        _ => {
            return Err(Stop::Forever(Some(format!(
                "`{}` is outside hollow's userland (docs/lifecycle.md)",
                argv.join(" ")
            ))));
        }
    };
    match result {
        Ok(status) => Ok(status),
        Err(message) => {
            shell
                .write(&io.stderr, &format!("{program}: {message}\n"))
                .ok();
            Ok(1)
        }
    }
}

/// `sleep N[smhd]...` (the sum), `sleep infinity`.
fn sleep(shell: &mut Shell<'_>, args: &[String], io: &Io) -> Result<i32, Stop> {
    let mut total = Duration::ZERO;
    for arg in args {
        if arg == "infinity" || arg == "inf" {
            return Err(Stop::Forever(None));
        }
        let (number, unit) = match arg.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
            Some((at, _)) => arg.split_at(at),
            None => (arg.as_str(), "s"),
        };
        let scale = match unit {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => f64::NAN,
        };
        match number.parse::<f64>().map(|n| n * scale) {
            Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
                total = total.saturating_add(Duration::from_secs_f64(seconds.min(1e12)));
            }
            _ => {
                shell
                    .write(&io.stderr, &format!("sleep: invalid number '{arg}'\n"))
                    .ok();
                return Ok(1);
            }
        }
    }
    if args.is_empty() {
        shell.write(&io.stderr, "sleep: missing operand\n").ok();
        return Ok(1);
    }
    shell.sleep(total)?;
    Ok(0)
}

/// `test`/`[`: a malformed expression is an error with status 2, as busybox gives.
fn test(shell: &mut Shell<'_>, args: &[String], io: &Io) -> Result<i32, String> {
    match test_expr::status(args, shell.fs, &shell.cwd) {
        Ok(status) => Ok(status),
        Err(message) => {
            shell.write(&io.stderr, &format!("sh: {message}\n"))?;
            Ok(2)
        }
    }
}

fn cat(shell: &mut Shell<'_>, args: &[String], io: &Io) -> Result<i32, String> {
    let files: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with('-') || *a == "-")
        .collect();
    if files.is_empty() {
        let stdin = io.stdin.clone();
        shell.write(&io.stdout, &stdin)?;
        return Ok(0);
    }
    let mut status = 0;
    for file in files {
        let text = if file == "-" {
            Ok(io.stdin.clone())
        } else {
            shell.fs.read(&shell.path(file))
        };
        match text {
            Ok(text) => shell.write(&io.stdout, &text)?,
            Err(message) => {
                shell.write(
                    &io.stderr,
                    &format!("cat: can't open '{file}': {}\n", tail_of(&message)),
                )?;
                status = 1;
            }
        }
    }
    Ok(status)
}

/// The reason in a filesystem error (`/x: No such file or directory`).
fn tail_of(message: &str) -> &str {
    message.rsplit(": ").next().unwrap_or(message)
}

/// Runs `each` on every path argument; a failure goes to stderr as `program: message`.
fn each_path(
    shell: &mut Shell<'_>,
    program: &str,
    args: &[String],
    io: &Io,
    mut each: impl FnMut(&mut Shell<'_>, &str) -> Result<(), String>,
) -> Result<i32, String> {
    let mut status = 0;
    for arg in args.iter().filter(|a| !a.starts_with('-')) {
        let path = shell.path(arg);
        if let Err(message) = each(shell, &path) {
            shell
                .write(&io.stderr, &format!("{program}: {message}\n"))
                .ok();
            status = 1;
        }
    }
    Ok(status)
}

fn copy(shell: &mut Shell<'_>, program: &str, args: &[String]) -> Result<i32, String> {
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let [from, to] = paths.as_slice() else {
        return Err("usage: mv|cp SOURCE DEST".into());
    };
    let (from, to) = (shell.path(from), shell.path(to));
    if program == "mv" {
        shell.fs.rename(&from, &to)?;
    } else {
        let text = shell.fs.read(&from)?;
        let to = if shell.fs.is_dir(&to) {
            super::fs::normalize(&to, from.rsplit('/').next().unwrap_or_default())
        } else {
            to
        };
        shell.fs.write(&to, &text, false)?;
    }
    Ok(0)
}

fn ls(shell: &mut Shell<'_>, args: &[String], io: &Io) -> Result<i32, String> {
    let mut paths: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let cwd = shell.cwd.clone();
    if paths.is_empty() {
        paths.push(&cwd);
    }
    let mut out = String::new();
    for path in paths {
        for name in shell
            .fs
            .list(&shell.path(path))
            .map_err(|m| m.to_string())?
        {
            out.push_str(&name);
            out.push('\n');
        }
    }
    shell.write(&io.stdout, &out)?;
    Ok(0)
}

/// `env` (and `env NAME=value... command`), `printenv [NAME]`.
fn env(shell: &mut Shell<'_>, program: &str, args: &[String], io: &Io) -> Result<i32, Stop> {
    let assignments = args.iter().take_while(|a| a.contains('=')).count();
    if program == "env" && assignments < args.len() {
        let saved = (shell.vars.clone(), shell.exported.clone());
        for (name, value) in args[..assignments].iter().filter_map(|a| a.split_once('=')) {
            shell.vars.insert(name.to_string(), value.to_string());
            shell.exported.insert(name.to_string());
        }
        let result = run(shell, &args[assignments..], io);
        (shell.vars, shell.exported) = saved;
        return result;
    }
    if program == "printenv" && !args.is_empty() {
        let mut status = 0;
        for name in args {
            match shell
                .vars
                .get(name)
                .filter(|_| shell.exported.contains(name))
            {
                Some(value) => {
                    let line = format!("{value}\n");
                    shell.write(&io.stdout, &line).ok();
                }
                None => status = 1,
            }
        }
        return Ok(status);
    }
    let mut out = String::new();
    for (name, value) in &shell.vars {
        if shell.exported.contains(name) {
            out.push_str(&format!("{name}={value}\n"));
        }
    }
    for (name, value) in args.iter().filter_map(|a| a.split_once('=')) {
        out.push_str(&format!("{name}={value}\n"));
    }
    shell.write(&io.stdout, &out).ok();
    Ok(0)
}

fn set(shell: &mut Shell<'_>, args: &[String]) -> Result<i32, String> {
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--" => {
                shell.args.truncate(1);
                shell.args.extend(rest.cloned());
                return Ok(0);
            }
            "-o" | "+o" => {
                rest.next();
            }
            flag if flag.starts_with('-') && flag.contains('e') => shell.errexit = true,
            flag if flag.starts_with('+') && flag.contains('e') => shell.errexit = false,
            _ => {}
        }
    }
    Ok(0)
}

/// `sh -c 'script' [name [args...]]`, `sh -e -c ...`, `sh` reading its stdin.
fn nested_shell(shell: &mut Shell<'_>, args: &[String], io: &Io) -> Result<i32, Stop> {
    let mut errexit = false;
    let mut rest = args;
    let mut script = None;
    while let Some((flag, tail)) = rest.split_first() {
        if flag == "-c" {
            script = tail.first().cloned();
            rest = tail.get(1..).unwrap_or_default();
            break;
        } else if flag.starts_with('-') {
            errexit |= flag.contains('e');
            rest = tail;
        } else {
            break;
        }
    }
    let script = match script {
        Some(script) => script,
        None if !rest.is_empty() => {
            return Err(Stop::Forever(Some(format!(
                "running the script file `{}` is outside hollow's userland",
                rest[0]
            ))));
        }
        None => io.stdin.clone(),
    };
    let list = match super::parse_script(&script) {
        Ok(list) => list,
        Err(super::Unsupported(why)) => return Err(Stop::Forever(Some(why))),
    };
    let saved = (
        shell.vars.clone(),
        shell.args.clone(),
        shell.cwd.clone(),
        shell.errexit,
    );
    shell.args = match rest.split_first() {
        Some((name, more)) => std::iter::once(name.clone())
            .chain(more.iter().cloned())
            .collect(),
        None => vec!["sh".into()],
    };
    shell.errexit = errexit;
    let result = shell.run_list(&list, io);
    (shell.vars, shell.args, shell.cwd, shell.errexit) = saved;
    match result {
        Ok(status) | Err(Stop::Exit(status)) => Ok(status),
        Err(stop) => Err(stop),
    }
}
