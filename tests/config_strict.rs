//! Both configure calls take exactly one JSON value: text after it is an error naming its
//! position. Free-form values (`bootstrap`, an exporter's `settings`) are bounded in depth, so a
//! host thread with a small stack can configure the deepest accepted one, and a deeper one is an
//! error naming the key, never a crash.

mod common;

use mpsupervisor::config::MAX_VALUE_DEPTH;
use mpsupervisor::{Error, Supervisor};
use serde_json::{json, Value};

fn config_error(sup: &Supervisor, json: &str) -> String {
    match sup.configure_json(json) {
        Err(Error::InvalidConfig(m)) => m,
        other => panic!("{json}: expected InvalidConfig, got {other:?}"),
    }
}

fn logging_error(sup: &Supervisor, json: &str) -> String {
    match sup.configure_logging_json(json) {
        Err(Error::InvalidConfig(m)) => m,
        other => panic!("{json}: expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn text_after_the_groups_array_is_rejected_naming_its_position() {
    let sup = Supervisor::new().unwrap();
    let group = r#"[{"name":"g","argv":["/bin/true"]}]"#;
    for (json, column) in [
        ("[] garbage", 4),
        ("[][{bad}]", 3),
        (&format!("{group} x") as &str, group.len() + 2),
        (&format!("{group}\n,") as &str, 1),
    ] {
        let m = config_error(&sup, json);
        assert!(
            m.starts_with("groups: after the array: trailing characters at line")
                && m.ends_with(&format!("column {column}")),
            "{json}: {m}"
        );
    }
    // Whitespace after the value is fine, and a rejected call changed nothing.
    sup.configure_json(&format!(" {group} \n\t")).unwrap();
    assert!(config_error(&sup, "[] x").contains("trailing"));
    sup.start_groups(&["g"]).unwrap();
}

#[test]
fn text_after_the_logging_settings_is_rejected_naming_its_position() {
    let sup = Supervisor::new().unwrap();
    for (json, column) in [
        ("{} garbage", 4),
        ("{}{}", 3),
        (r#"{"exporters":[{"kind":"stderr"}]} ]"#, 35),
    ] {
        let m = logging_error(&sup, json);
        assert!(
            m.starts_with("settings: after the object: trailing characters at line 1")
                && m.ends_with(&format!("column {column}")),
            "{json}: {m}"
        );
    }
    sup.configure_logging_json(" {} \n").unwrap();
}

/// `levels` nested arrays and objects around a number.
fn nested(levels: usize) -> Value {
    let mut v = json!(7);
    for i in 0..levels {
        v = if i % 2 == 0 {
            json!([v])
        } else {
            json!({"k": v})
        };
    }
    v
}

/// Runs `f` on a thread with a 96 KiB stack, like a host thread made small on purpose.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(96 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .expect("the small-stack thread died")
}

#[test]
fn the_deepest_accepted_bootstrap_fits_a_96_kib_host_thread_and_deeper_is_rejected() {
    let deepest =
        json!([{"name": "g", "argv": ["/bin/true"], "bootstrap": nested(MAX_VALUE_DEPTH)}]);
    let deeper =
        json!([{"name": "g", "argv": ["/bin/true"], "bootstrap": nested(MAX_VALUE_DEPTH + 1)}]);
    // serde_json would refuse to print or read these past its own limit of 128: stay below it.
    const { assert!(MAX_VALUE_DEPTH + 4 < 128) };
    let (accepted, rejected) = on_small_stack(move || {
        let sup = Supervisor::new().unwrap();
        let accepted = sup.configure_json(&deepest.to_string());
        let rejected = sup.configure_json(&deeper.to_string());
        // Starting sends the BOOTSTRAP line, printed on this thread too.
        let started = sup.start_groups(&["g"]);
        (accepted.and(started), rejected)
    });
    accepted.unwrap();
    match rejected {
        Err(Error::InvalidConfig(m)) => assert!(
            m.starts_with(&format!(
                "groups[0].bootstrap: nested more than {MAX_VALUE_DEPTH} levels deep (arrays and objects) at line 1 column"
            )),
            "{m}"
        ),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn a_deep_exporter_settings_value_is_rejected_on_a_96_kib_host_thread() {
    let deeper = json!({"exporters": [{"kind": "jsonl", "settings": nested(MAX_VALUE_DEPTH + 1)}]});
    let rejected = on_small_stack(move || {
        Supervisor::new()
            .unwrap()
            .configure_logging_json(&deeper.to_string())
    });
    match rejected {
        Err(Error::InvalidConfig(m)) => assert!(
            m.starts_with("settings.exporters[0].settings") && m.contains("nested more than"),
            "{m}"
        ),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}
