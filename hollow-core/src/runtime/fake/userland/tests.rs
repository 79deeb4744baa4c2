use std::time::Duration;

use super::{Container, End, HORIZON, Run, Stream, runs};

/// Runs `command` over `env` in a busybox container named `hostname`.
fn run(
    command: &[String],
    env: &[(String, String)],
    hostname: &str,
    horizon: Duration,
    log: bool,
) -> Run {
    let container = Container {
        image: "busybox",
        command,
        env,
        hostname,
        files: &[],
    };
    super::run(container, horizon, log)
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The run's end and its stdout and stderr lines.
fn outcome(command: &[String], env: &[(String, String)]) -> (End, Vec<String>, Vec<String>) {
    let ran = run(command, env, "pod-0", HORIZON, true);
    let lines = |stream| {
        ran.log
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.text.clone())
            .collect()
    };
    (
        ran.end.clone(),
        lines(Stream::Stdout),
        lines(Stream::Stderr),
    )
}

fn exit(seconds: u64, code: i32) -> End {
    End::Exit {
        after: Duration::from_secs(seconds),
        code,
    }
}

#[test]
fn a_job_index_decides_the_exit_code() {
    // test/e2e/apps/job.go's pods: even indexes succeed, odd ones fail.
    for (index, code) in [("0", 0), ("1", 1), ("2", 0), ("3", 1)] {
        let env = env(&[("JOB_COMPLETION_INDEX", index)]);
        let (end, _, _) = outcome(&sh("exit $(( JOB_COMPLETION_INDEX % 2 ))"), &env);
        assert_eq!(end, exit(0, code), "index {index}");
        let script =
            "if [ $(expr ${JOB_COMPLETION_INDEX} % 2) -ne 0 ]; then exit 1; else exit 0; fi";
        assert_eq!(outcome(&sh(script), &env).0, exit(0, code), "index {index}");
    }
}

#[test]
fn sleep_moves_the_clock_and_echo_writes_the_log_at_its_time() {
    let alive = run(
        &sh("echo container is alive; sleep 10000"),
        &[],
        "p",
        HORIZON,
        true,
    );
    assert_eq!(alive.end, exit(10_000, 0));
    assert_eq!(alive.log.len(), 1);
    assert_eq!(alive.log[0].text, "container is alive");
    assert_eq!(alive.log[0].after, Duration::ZERO);

    let looped = run(
        &sh("for i in 1 2 3; do echo tick $i; sleep 1.5; done"),
        &[],
        "p",
        Duration::from_secs(2),
        true,
    );
    assert_eq!(looped.end, End::Running, "the horizon stops the run");
    let times: Vec<(Duration, &str)> = looped
        .log
        .iter()
        .map(|l| (l.after, l.text.as_str()))
        .collect();
    assert_eq!(
        times,
        [
            (Duration::ZERO, "tick 1"),
            (Duration::from_millis(1500), "tick 2")
        ]
    );
    assert_eq!(
        outcome(&sh("for i in 1 2 3; do sleep 1m; done"), &[]).0,
        exit(180, 0)
    );
}

#[test]
fn files_written_read_and_removed() {
    let script = "echo ok > /tmp/health; cat /tmp/health; rm /tmp/health; cat /tmp/health";
    let (end, out, err) = outcome(&sh(script), &[]);
    assert_eq!(end, exit(0, 1));
    assert_eq!(out, ["ok"]);
    assert_eq!(
        err,
        ["cat: can't open '/tmp/health': No such file or directory"]
    );

    let script = "mkdir -p /data/a && echo x >> /data/a/f && echo y >> /data/a/f && mv /data/a /b && ls /b && cat /b/f && [ ! -e /data/a/f ]";
    let (end, out, _) = outcome(&sh(script), &[]);
    assert_eq!(end, exit(0, 0));
    assert_eq!(out, ["f", "x", "y"]);
    assert_eq!(outcome(&sh("cat /etc/hostname"), &[]).1, ["pod-0"]);

    // The fuzz test below found this: once `rm -rf /` had removed the root, `mkdir -p`
    // walked up for ever and overflowed the stack. The root is a mount point and stays.
    let script = "rm -rf /; mkdir -p /a/b && ls /a";
    let (end, out, err) = outcome(&sh(script), &[]);
    assert_eq!(end, exit(0, 0));
    assert_eq!(out, ["b"]);
    assert_eq!(err, ["rm: can't remove '/': Resource busy"]);
}

#[test]
fn expansions_quoting_and_fields() {
    let env = env(&[("NAME", "web"), ("LIST", "a b  c")]);
    let (_, out, _) = outcome(
        &sh(
            r#"echo "$NAME:  ${NAME}" 'single $NAME' \$NAME; for v in $LIST; do echo "[$v]"; done"#,
        ),
        &env,
    );
    assert_eq!(out, ["web:  web single $NAME $NAME", "[a]", "[b]", "[c]"]);
    let (_, out, _) = outcome(
        &sh(
            "echo ${UNSET:-fallback} ${NAME:+set} x${UNSET}y; A=$((2 ** 10)); echo $A $((A / 4)) $(( A > 1 ? 7 : 8 ))",
        ),
        &env,
    );
    assert_eq!(out, ["fallback set xy", "1024 256 7"]);
    let mut command = sh(r#"echo "$0 got $# args: $@""#);
    command.extend(["name".to_string(), "one".into(), "two".into()]);
    assert_eq!(outcome(&command, &[]).1, ["name got 2 args: one two"]);
    assert_eq!(
        outcome(
            &sh("printf '%s=%d\\n' a 1 b 2; echo $(echo inner) `echo back`"),
            &[]
        )
        .1,
        ["a=1", "b=2", "inner back"]
    );
}

#[test]
fn status_logic_pipes_and_errexit() {
    let (end, out, _) = outcome(
        &sh(
            "false || echo or; true && echo and; ! false && echo not; seq 3 | wc -l; echo hi | cat",
        ),
        &[],
    );
    assert_eq!(end, exit(0, 0));
    assert_eq!(out, ["or", "and", "not", "3", "hi"]);
    let (end, out, _) = outcome(
        &sh("set -e; if false; then :; fi; false || true; false; echo never"),
        &[],
    );
    assert_eq!(end, exit(0, 1));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(outcome(&sh("(exit 4); echo $?"), &[]).1, ["4"]);
    assert_eq!(outcome(&sh("echo $((1 / 0))"), &[]).0, exit(0, 2));
    let (end, out, _) = outcome(
        &sh("i=0; while [ $i -lt 3 ]; do i=$((i+1)); done; echo $i; until true; do :; done"),
        &[],
    );
    assert_eq!((end, out), (exit(0, 0), vec!["3".to_string()]));
}

#[test]
fn env_lists_the_environment_and_assignments_before_a_command() {
    let env = env(&[("B", "2"), ("A", "1")]);
    let (_, out, _) = outcome(&sh("LOCAL=x; export EXTRA=3; env"), &env);
    assert_eq!(out, ["A=1", "B=2", "EXTRA=3"]);
    let (end, out, _) = outcome(&sh("ONCE=1 printenv ONCE; printenv ONCE"), &env);
    assert_eq!((end, out), (exit(0, 1), vec!["1".to_string()]));
    let (_, out, _) = outcome(&sh("ONCE=1 env | wc -l"), &env);
    assert_eq!(out, ["3"]);
}

#[test]
fn what_runs_forever_and_what_is_outside() {
    assert_eq!(
        outcome(&sh("echo start; sleep infinity"), &[]).0,
        End::Forever {
            after: Duration::ZERO,
            why: None
        }
    );
    assert!(matches!(
        outcome(&["tail".into(), "-f".into(), "/dev/null".into()], &[]).0,
        End::Forever { why: None, .. }
    ));
    let (end, out, _) = outcome(
        &sh("echo starting; sleep 2; exec nginx -g 'daemon off;'"),
        &[],
    );
    assert_eq!(out, ["starting"]);
    let End::Forever {
        after,
        why: Some(why),
    } = end
    else {
        panic!("{end:?}");
    };
    assert_eq!(after, Duration::from_secs(2));
    assert!(
        why.contains("`nginx -g daemon off;` is outside hollow's userland"),
        "{why}"
    );
    let End::Forever { why: Some(why), .. } = outcome(&sh("case x in x) exit 1;; esac"), &[]).0
    else {
        panic!("case is not in the subset");
    };
    assert!(why.contains("`case` here"), "{why}");
    let End::Forever { why: Some(why), .. } = outcome(&sh("while true; do sleep 5; done"), &[]).0
    else {
        panic!("an endless loop counts as running forever");
    };
    assert!(why.contains("without ending"), "{why}");
    assert!(runs(&sh("true")) && runs(&["/bin/sleep".into(), "5".into()]));
    assert!(!runs(&["nginx".into()]) && !runs(&[]));
}

/// Fragments scripts are made of, valid and broken alike.
const FRAGMENTS: &[&str] = &[
    "echo a",
    "exit 3",
    "sleep 1",
    "if",
    "then",
    "else",
    "fi",
    "while",
    "until",
    "do",
    "done",
    "for i in 1 2",
    "true",
    "false",
    ";",
    "\n",
    "&&",
    "||",
    "|",
    "&",
    "(",
    ")",
    "{",
    "}",
    "!",
    "$",
    "$(",
    "$((",
    "))",
    "${",
    "}",
    "${X:-",
    "'",
    "\"",
    "`",
    "\\",
    ">",
    ">>",
    "<",
    "2>&1",
    ">&",
    "/tmp/f",
    "cat",
    "rm -rf /",
    "mkdir -p /a/b",
    "mv /a /b",
    "[",
    "]",
    "-eq",
    "=",
    "$((1/0))",
    "$((2**62*4))",
    "X=1",
    "$X",
    "$@",
    "$9",
    "#",
    "set -e",
    "sh -c",
    "exec",
    "printf %d%s",
    "seq 5",
    "expr 1 + a",
    "case",
    "esac",
    "nginx",
    "sleep infinity",
    "sleep -1",
    "sleep 1e400",
    "head -n",
    "tail -n 99999999999",
];

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: std::env::var("HOLLOW_FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..proptest::test_runner::Config::default()
    })]

    /// No script panics or runs away: every run ends (an exit, running forever, or the
    /// horizon) within its command budget, and keeps at most its log limit.
    #[test]
    fn fuzz_any_script_ends_without_panicking(
        parts in proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..24),
        spaces in proptest::collection::vec(proptest::bool::ANY, 24),
    ) {
        let mut script = String::new();
        for (part, space) in parts.iter().zip(&spaces) {
            script.push_str(part);
            if *space {
                script.push(' ');
            }
        }
        let ran = run(&sh(&script), &[], "p", HORIZON, true);
        proptest::prop_assert!(ran.log.len() <= super::LOG_LIMIT);
        if let End::Exit { after, .. } | End::Forever { after, .. } = ran.end {
            proptest::prop_assert!(after <= HORIZON);
        }
    }
}

#[test]
fn deep_nesting_is_outside_not_a_stack_overflow() {
    // A pod's command is input: nesting ten thousand deep must not overflow the stack
    // of the process that serves every node. Nesting as deep as scripts go still runs.
    let forms = [
        ("(", ")"),
        ("{ ", "; }"),
        ("if true; then ", "; fi"),
        ("${X:-", "}"),
        ("echo $(", ")"),
    ];
    for (open, close) in forms {
        let nested = |depth| format!("{}echo ok{}", open.repeat(depth), close.repeat(depth));
        let (end, out, _) = outcome(&sh(&nested(16)), &[]);
        assert_eq!((end, out), (exit(0, 0), vec!["ok".to_string()]), "{open}");
        let End::Forever { why: Some(why), .. } =
            run(&sh(&nested(10_000)), &[], "p", HORIZON, true).end
        else {
            panic!("{open} x10000 ran");
        };
        assert!(why.starts_with("nesting deeper than"), "{why}");
    }
    // A script that runs itself nests at run time, not in its text.
    let script = r#"X='echo a; sh -c "$X"'; sh -c "$X""#;
    let ran = run(&sh(script), &[], "p", HORIZON, true);
    assert!(matches!(ran.end, End::Forever { why: Some(ref why), .. } if why.contains("nesting")));
    let deep = format!("echo $(({}1))", "-".repeat(10_000));
    let (end, _, err) = outcome(&sh(&deep), &[]);
    assert_eq!(end, exit(0, 2));
    assert_eq!(err, ["sh: arithmetic nested deeper than 32 levels"]);
}
