use super::*;

fn err(json: &str) -> String {
    match parse_groups(json) {
        Err(Error::InvalidConfig(m)) => m,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn defaults_match_the_contract() {
    let g = &parse_groups(r#"[{"name":"a","argv":["/bin/true"]}]"#).unwrap()[0];
    assert_eq!(g.workers, 1);
    assert!(g.inherit_env);
    assert_eq!(g.readiness, Readiness::Warmup);
    assert_eq!(g.warmup_ms, 20);
    assert_eq!(g.control_channel, ControlChannelMode::Auto);
    assert_eq!(g.stop_signal, StopSignal::TERM);
    assert_eq!(g.stdout, Output::Inherit);
    assert_eq!(g.stderr, Output::Inherit);
    assert!(g.env.is_empty() && g.cwd.is_none());
    assert_eq!(g.restart, Restart::Never);
    assert_eq!(
        (
            g.restart_delay_ms,
            g.restart_delay_max_ms,
            g.backoff_reset_ms
        ),
        (100, 30_000, 10_000)
    );
    assert_eq!((g.max_restarts, g.restart_window_ms), (5, 60_000));
    assert_eq!((g.ready_timeout_ms, g.heartbeat_timeout_ms), (0, 0));
    assert_eq!(g.bootstrap, None);
    assert!(!g.start_gate);
}

#[test]
fn supervision_keys_parse() {
    let g = &parse_groups(
        r#"[{"name":"a","argv":["x"],"restart":"on-failure","restart_delay_ms":5,
            "restart_delay_max_ms":50,"backoff_reset_ms":7,"max_restarts":2,
            "restart_window_ms":1000,"ready_timeout_ms":300,"heartbeat_timeout_ms":400,
            "bootstrap":null,"start_gate":true}]"#,
    )
    .unwrap()[0];
    assert_eq!(g.restart, Restart::OnFailure);
    assert_eq!(g.bootstrap.as_ref().map(Bootstrap::as_str), Some("null"));
    assert!(g.start_gate);
    assert_eq!(g.restart_spec().max_restarts, 2);
    assert!(err(r#"[{"name":"a","argv":["x"],"restart":"sometimes"}]"#)
        .starts_with("groups[0].restart"));
    assert!(
        err(r#"[{"name":"a","argv":["x"],"ready_timeout_ms":1e30}]"#)
            .starts_with("groups[0].ready_timeout_ms")
    );
}

#[test]
fn full_group_parses() {
    let g = &parse_groups(
        r#"[{"name": "ingest", "workers": 2, "argv": ["/usr/bin/worker", "--mode", "fast"],
            "env": {"KEY": "VALUE"}, "inherit_env": false, "cwd": "/srv",
            "readiness": "notify", "warmup_ms": 5, "control_channel": "off",
            "stop_signal": "SIGINT", "stdout": "null",
            "stderr": {"file": "/tmp/x.log", "append": false}}]"#,
    )
    .unwrap()[0];
    assert_eq!(g.workers, 2);
    assert_eq!(g.env["KEY"], "VALUE");
    assert_eq!(g.readiness, Readiness::Notify);
    assert_eq!(g.control_channel, ControlChannelMode::Off);
    assert_eq!(g.stop_signal, StopSignal::named("SIGINT").unwrap());
    assert_eq!(g.stdout, Output::Null);
    assert_eq!(
        g.stderr,
        Output::File {
            path: "/tmp/x.log".into(),
            append: false
        }
    );
}

#[test]
fn errors_name_the_json_path() {
    assert!(err(r#"{}"#).starts_with("groups: "));
    assert!(err(r#"[{"name":"a"}]"#).starts_with("groups[0]: missing field `argv`"));
    assert!(err(r#"[{"name":"a","argv":["x"]},{"name":"b","argv":7}]"#)
        .starts_with("groups[1].argv: invalid type"));
    assert!(err(r#"[{"name":"a","argv":["x"],"colour":1}]"#).contains("unknown field `colour`"));
    assert!(err(r#"[{"name":"a","argv":["x"],"workers":-1}]"#).starts_with("groups[0].workers"));
    assert!(err(r#"[{"name":"a","argv":["x"],"workers":0}]"#).starts_with("groups[0].workers"));
    assert!(err(r#"[{"name":"a","argv":["x"],"workers":4097}]"#).starts_with("groups[0].workers"));
    assert!(err(r#"[{"name":"a","argv":[]}]"#).starts_with("groups[0].argv: must not"));
    assert!(err(r#"[{"name":"","argv":["x"]}]"#).starts_with("groups[0].name"));
    assert!(err(r#"[{"name":"a#b","argv":["x"]}]"#).starts_with("groups[0].name"));
    assert!(
        err(r#"[{"name":"a","argv":["x"]},{"name":"a","argv":["y"]}]"#)
            .starts_with("groups[1].name: duplicate")
    );
    assert!(
        err(r#"[{"name":"a","argv":["x"],"stop_signal":"SIGNOPE"}]"#)
            .starts_with("groups[0].stop_signal: unknown signal")
    );
    assert!(err(r#"[{"name":"a","argv":["x"],"stdout":"tty"}]"#).starts_with("groups[0].stdout"));
    assert!(
        err(r#"[{"name":"a","argv":["x"],"stdout":{"file":"/x","mode":1}}]"#)
            .starts_with("groups[0].stdout")
    );
    assert!(err(r#"[{"name":"a","argv":["x\u0000"]}]"#).starts_with("groups[0].argv[0]"));
    assert!(err(r#"[{"name":"a","argv":["x"],"env":{"A=B":"1"}}]"#).starts_with("groups[0].env"));
    assert!(err(r#"[{"name":"a","argv":["x"],"readiness":"psychic"}]"#)
        .starts_with("groups[0].readiness"));
    assert!(err(r#"[{"name":"a","argv":["x"]}"#).starts_with("groups"));
}

#[test]
fn empty_array_is_a_valid_configuration() {
    assert!(parse_groups("[]").unwrap().is_empty());
}

#[test]
fn identity_keys_parse_and_their_errors_name_the_key() {
    let g = &parse_groups(
        r#"[{"name":"a","argv":["x"],"user":"nobody","group":65534,
             "supplementary_groups":["nogroup", "7"],"umask":"0027","no_new_privileges":true,
             "rlimits":{"nofile":[64, 128],"core":0,"as":"infinity","cpu":[1,"infinity"]},
             "env_files":["/etc/a", "-/etc/b"]}]"#,
    )
    .unwrap()[0];
    assert_eq!(g.user, Some(Id::Name("nobody".into())));
    assert_eq!(g.group, Some(Id::Number(65534)));
    assert_eq!(
        g.supplementary_groups.as_ref().unwrap()[1].number(),
        Some(7)
    );
    assert_eq!(parse_umask(g.umask.as_deref().unwrap()), Some(0o27));
    assert_eq!(
        g.rlimits
            .given()
            .iter()
            .map(|(n, l)| (*n, l.soft_hard()))
            .collect::<Vec<_>>(),
        vec![
            ("nofile", (64, 128)),
            ("core", (0, 0)),
            ("as", (u64::MAX, u64::MAX)),
            ("cpu", (1, u64::MAX))
        ]
    );
    let group = |extra: &str| format!(r#"[{{"name":"a","argv":["x"],{extra}}}]"#);
    for (extra, named) in [
        (r#""rlimits":{"nofiles":1}"#, "groups[0].rlimits.nofiles"),
        (r#""rlimits":{"nofile":[2,1]}"#, "groups[0].rlimits.nofile"),
        (r#""rlimits":{"core":-1}"#, "groups[0].rlimits.core"),
        (r#""umask":"0778""#, "groups[0].umask"),
        (r#""umask":"27""#, "groups[0].umask"),
        (r#""user":"""#, "groups[0].user"),
        (r#""user":-1"#, "groups[0].user"),
        // A C string ends at the NUL: the lookup would find another name.
        (r#""user":"a\u0000b""#, "groups[0].user"),
        (
            r#""supplementary_groups":["a",""]"#,
            "groups[0].supplementary_groups[1]",
        ),
        // (uid_t)-1 is "unchanged" to setresuid: a worker would keep the host's user.
        (r#""user":4294967295,"group":0"#, "groups[0].user"),
        (r#""group":"4294967295""#, "groups[0].group"),
        (
            r#""supplementary_groups":[4294967295]"#,
            "groups[0].supplementary_groups[0]",
        ),
        (r#""env_files":["relative"]"#, "groups[0].env_files[0]"),
        (r#""env_files":["-relative"]"#, "groups[0].env_files[0]"),
    ] {
        let m = err(&group(extra));
        assert!(m.starts_with(&format!("{named}: ")), "{extra}: {m}");
    }
}

/// The bounded parser of free-form values keeps each scalar as it was written: a boolean, a
/// negative, an unsigned past `i64::MAX`, a fraction, a string and null (each kind has its
/// own visitor method; a method answering a default value would lose the host's data).
#[test]
fn bootstrap_keeps_every_kind_of_json_value() {
    let text = r#"{"b":true,"f":1.5,"i":-3,"n":null,"s":"x","u":18446744073709551615}"#;
    let g = &parse_groups(&format!(
        r#"[{{"name":"a","argv":["x"],"bootstrap":{text}}}]"#
    ))
    .unwrap()[0];
    assert_eq!(g.bootstrap.as_ref().map(Bootstrap::as_str), Some(text));
    let g = &parse_groups(r#"[{"name":"a","argv":["x"],"bootstrap":[false,[7]]}]"#).unwrap()[0];
    assert_eq!(
        g.bootstrap.as_ref().map(Bootstrap::as_str),
        Some("[false,[7]]")
    );
    // From a `serde_json::Value` (a Rust host's path), strings arrive owned (`visit_string`).
    let value = serde_json::json!({"name": "a", "argv": ["x"], "bootstrap": {"s": "x", "t": true}});
    let g: GroupSpec = serde_json::from_value(value).unwrap();
    assert_eq!(
        g.bootstrap.as_ref().map(Bootstrap::as_str),
        Some(r#"{"s":"x","t":true}"#)
    );
}

/// Each output form parses to its kind (`"inherit"` too, though it is the default), and
/// `captured` says which ones the supervisor reads through a pipe.
#[test]
fn each_output_form_parses_and_says_whether_it_is_captured() {
    let forms = [
        (r#""inherit""#, false),
        (r#""null""#, false),
        (r#""capture""#, true),
        (r#"{"file": "/tmp/o.log"}"#, false),
        (r#"{"file": "/tmp/o.log", "max_bytes": 10}"#, true),
    ];
    for (form, captured) in forms {
        let g = &parse_groups(&format!(r#"[{{"name":"a","argv":["x"],"stdout":{form}}}]"#))
            .unwrap_or_else(|e| panic!("{form}: {e}"))[0];
        assert_eq!(g.stdout.captured(), captured, "{form}");
    }
    let g = &parse_groups(r#"[{"name":"a","argv":["x"],"stderr":"inherit"}]"#).unwrap()[0];
    assert_eq!(g.stderr, Output::Inherit);
}

/// The name each readiness has in JSON is the one events and snapshots give.
#[test]
fn each_readiness_is_named_as_in_json() {
    for r in [
        Readiness::Warmup,
        Readiness::Notify,
        Readiness::SdNotify,
        Readiness::Probe,
    ] {
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
    }
}

/// A group's four limit keys are what its limits hold; a bootstrap is written as it was given.
#[test]
fn a_groups_limits_and_bootstrap_are_read_back_as_given() {
    let g = &parse_groups(
        r#"[{"name":"a","argv":["x"],"memory_max":"1G","memory_high":4096,"pids_max":"max",
             "cpu_max":"50%","bootstrap":{"k":[1]}}]"#,
    )
    .unwrap()[0];
    let l = g.limits();
    assert_eq!(l.memory_max, Some(MemorySize::Bytes(1 << 30)));
    assert_eq!(l.memory_high, Some(MemorySize::Bytes(4096)));
    assert_eq!(l.pids_max, Some(PidsMax::Max));
    assert!(l.cpu_max.is_some() && !l.is_empty());
    let plain = &parse_groups(r#"[{"name":"a","argv":["x"]}]"#).unwrap()[0];
    assert!(plain.limits().is_empty(), "no limit key, no limits");
    assert_eq!(g.bootstrap.as_ref().unwrap().to_string(), r#"{"k":[1]}"#);
}
