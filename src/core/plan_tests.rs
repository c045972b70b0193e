//! Which key of a group needs the exec shim, as the error for a host without it names it.

use super::Attributes;

#[test]
fn nothing_to_set_needs_no_shim() {
    assert_eq!(Attributes::default().first_key(), None);
}

#[test]
fn the_first_key_named_is_the_first_the_shim_applies() {
    let all = Attributes {
        rlimits: vec![("nofile", 64, 64)],
        umask: Some(0o22),
        groups: Some(vec![5]),
        gid: Some(5),
        uid: Some(5),
        no_new_privileges: true,
    };
    assert_eq!(all.first_key(), Some("rlimits"));
    let without_rlimits = Attributes {
        rlimits: vec![],
        ..all.clone()
    };
    assert_eq!(without_rlimits.first_key(), Some("umask"));
    // Each alone names itself.
    let alone = [
        (
            Attributes {
                groups: Some(vec![]),
                ..Default::default()
            },
            "supplementary_groups",
        ),
        (
            Attributes {
                gid: Some(0),
                ..Default::default()
            },
            "group",
        ),
        (
            Attributes {
                uid: Some(0),
                ..Default::default()
            },
            "user",
        ),
        (
            Attributes {
                no_new_privileges: true,
                ..Default::default()
            },
            "no_new_privileges",
        ),
    ];
    for (attrs, key) in alone {
        assert_eq!(attrs.first_key(), Some(key));
    }
}
