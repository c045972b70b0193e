//! Every numeric bound of the configuration, read from the committed schemas: the value just
//! inside is accepted and the value just outside is rejected with a message naming the key.
//! A key added to a group, to a listen socket, to an output or to the restart options is covered
//! here without a new line of test; a new kind of nested object needs one line in `base`.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

use mpsupervisor::config::parse_groups;
use mpsupervisor::ffi::{
    mpsup_last_error_message, mpsup_restart_groups, mpsup_result, mpsup_supervisor,
    mpsup_supervisor_free, mpsup_supervisor_new,
};
use serde_json::{json, Value};

fn schema(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("schema/{name}.schema.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A bound to try: the key, the value just inside, and the value just outside (JSON text, so
/// that 2^64 can be written).
struct Bound {
    key: String,
    inside: String,
    outside: String,
}

/// The bounds of one integer property: its `minimum` and `maximum`, else those of its format.
fn bounds(key: &str, prop: &Value) -> Vec<Bound> {
    let format_max = match prop["format"].as_str() {
        Some("uint32") => Some(u64::from(u32::MAX)),
        Some("uint64") => Some(u64::MAX),
        _ => None,
    };
    let mut found = Vec::new();
    if let Some(min) = prop["minimum"].as_u64() {
        let outside = i128::from(min) - 1;
        found.push(Bound {
            key: key.into(),
            inside: min.to_string(),
            outside: outside.to_string(),
        });
    }
    if let Some(max) = prop["maximum"].as_u64().or(format_max) {
        found.push(Bound {
            key: key.into(),
            inside: max.to_string(),
            outside: (u128::from(max) + 1).to_string(),
        });
    }
    found
}

/// Every integer property of `object` (a schema of an object with properties).
fn integer_properties(object: &Value) -> Vec<Bound> {
    let Some(props) = object["properties"].as_object() else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for (key, prop) in props {
        let types = match &prop["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if types.contains(&"integer") {
            all.extend(bounds(key, prop));
        }
    }
    all
}

/// Puts a valid object of one schema definition where it goes in a group.
type Placement = fn(Value) -> Value;

/// For each definition of the groups schema that has integer keys: a valid object of it, and
/// where it goes in a group.
fn base(def: &str) -> Option<(Value, Placement)> {
    fn alone(g: Value) -> Value {
        g
    }
    fn as_stdout(o: Value) -> Value {
        json!({"name": "g", "argv": ["/bin/true"], "stdout": o})
    }
    fn as_probe(p: Value) -> Value {
        json!({"name": "g", "argv": ["/bin/true"], "liveness_probe": p})
    }
    fn as_listen(l: Value) -> Value {
        json!({"name": "g", "argv": ["/bin/true"], "listen": [l]})
    }
    Some(match def {
        "GroupSpec" => (json!({"name": "g", "argv": ["/bin/true"]}), alone),
        "ExecProbe" => (json!({"exec": ["/bin/true"]}), as_probe),
        "TcpProbe" => (json!({"tcp": "127.0.0.1:1"}), as_probe),
        "HttpProbe" => (json!({"http": "http://127.0.0.1:1/"}), as_probe),
        "RotateOutput" => (json!({"file": "/tmp/x.log", "max_bytes": 4096}), as_stdout),
        "TcpListen" => (json!({"name": "h", "tcp": "127.0.0.1:0"}), as_listen),
        "UnixListen" => (json!({"name": "h", "unix": "@mpsup-bounds"}), as_listen),
        _ => return None,
    })
}

/// `object` with `key` set to the JSON number `number`, as text: a number JSON values cannot
/// hold (2^64, or -1 for an unsigned key) is put in as text.
fn with_number(object: &Value, key: &str, number: &str) -> String {
    let mut object = object.clone();
    object[key] = Value::String(PLACE.into());
    object.to_string().replace(&format!("\"{PLACE}\""), number)
}

const PLACE: &str = "mpsup-bounds-number";

#[test]
fn every_bound_of_a_group_accepts_its_edge_and_rejects_one_past_it() {
    let schema = schema("groups");
    let mut tried = 0;
    for (def, object) in schema["$defs"].as_object().unwrap() {
        let found = integer_properties(object);
        if found.is_empty() {
            continue;
        }
        let (base, place) = base(def).unwrap_or_else(|| {
            panic!("{def} has integer keys: give config_bounds.rs a valid {def} in `base`")
        });
        for b in found {
            let inside = with_number_in_group(&base, place, &b.key, &b.inside);
            if let Err(e) = parse_groups(&inside) {
                panic!("{def}.{} = {} rejected: {e}", b.key, b.inside);
            }
            let outside = with_number_in_group(&base, place, &b.key, &b.outside);
            match parse_groups(&outside) {
                Ok(_) => panic!("{def}.{} = {} accepted", b.key, b.outside),
                Err(e) => assert!(
                    e.to_string().contains(&b.key),
                    "{def}.{} = {}: the error does not name the key: {e}",
                    b.key,
                    b.outside
                ),
            }
            tried += 1;
        }
    }
    // workers, the ten *_ms keys, output_tail_lines, max_restarts, backlog, max_bytes, keep...
    assert!(tried >= 15, "only {tried} bounds found in the schema");
}

/// A group holding `base` (placed by `place`) whose `key` is the number `number`, as text.
fn with_number_in_group(
    base: &Value,
    place: fn(Value) -> Value,
    key: &str,
    number: &str,
) -> String {
    let mut object = base.clone();
    object[key] = Value::String(PLACE.into());
    format!("[{}]", place(object)).replace(&format!("\"{PLACE}\""), number)
}

/// Restart options go through the C call: parsed and checked before the group is looked up, so
/// an accepted value meets the unknown group and a rejected one is `MPSUP_ERR_INVALID_ARGUMENT`
/// (an argument of the call, not the configuration).
#[test]
fn every_bound_of_the_restart_options_accepts_its_edge_and_rejects_one_past_it() {
    let mut sup = mpsup_supervisor { id: 0 };
    assert_eq!(mpsup_supervisor_new(&mut sup), mpsup_result::MPSUP_OK);
    let name = CString::new("no-such-group").unwrap();
    let names = [name.as_ptr()];
    let restart = |text: &str| {
        let text = CString::new(text).unwrap();
        let result = mpsup_restart_groups(sup, names.as_ptr(), 1, text.as_ptr());
        // SAFETY: the library's message for this thread, copied at once.
        let message = unsafe { CStr::from_ptr(mpsup_last_error_message()) };
        (result, message.to_string_lossy().into_owned())
    };
    let found = integer_properties(&schema("restart-options"));
    assert!(found.len() >= 3, "{} bounds", found.len());
    for b in found {
        let (result, message) = restart(&with_number(&json!({}), &b.key, &b.inside));
        assert_eq!(
            result,
            mpsup_result::MPSUP_ERR_UNKNOWN_GROUP,
            "{} = {}: {message}",
            b.key,
            b.inside
        );
        let (result, message) = restart(&with_number(&json!({}), &b.key, &b.outside));
        assert_eq!(
            result,
            mpsup_result::MPSUP_ERR_INVALID_ARGUMENT,
            "{} = {} accepted",
            b.key,
            b.outside
        );
        assert!(message.contains(&b.key), "{}: {message}", b.key);
    }
    assert_eq!(mpsup_supervisor_free(sup), mpsup_result::MPSUP_OK);
}
