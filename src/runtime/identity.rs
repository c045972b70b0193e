//! Works out a group's `Attributes` when it is started: user and group names resolved to numbers
//! (`user` without `supplementary_groups` brings that user's groups, as `initgroups` would), and
//! checked against what this process may do, so that a host without the privilege is told at
//! start instead of getting a worker that runs as the wrong user.

use std::ffi::CString;

use nix::sys::resource::{getrlimit, Resource};
use nix::unistd::{self, Gid, Group, Uid, User};

use crate::config::{parse_umask, GroupSpec, Id};
use crate::core::plan::Attributes;
use crate::error::{Error, Result};
use crate::os::{has_capability, CAP_SETGID, CAP_SETUID, CAP_SYS_RESOURCE};

/// The attributes the exec shim sets for `spec`'s workers: only what differs from this
/// process's own (so that an unprivileged host may name itself).
pub fn resolve(spec: &GroupSpec) -> Result<Attributes> {
    let at = |key: &str| format!("group '{}': {key}", spec.name);
    let user = spec
        .user
        .as_ref()
        .map(|id| user_of(id, &at("user")))
        .transpose()?;
    let gid = match (&spec.group, &user) {
        (Some(id), _) => Some(gid_of(id, &at("group"))?),
        (None, Some(u)) => Some(u.gid.ok_or_else(|| {
            Error::InvalidConfig(format!(
                "{}: uid {} has no entry in the user database: give 'group'",
                at("user"),
                u.uid
            ))
        })?),
        (None, None) => None,
    };
    let groups = match (&spec.supplementary_groups, &user) {
        (Some(ids), _) => Some(
            ids.iter()
                .enumerate()
                .map(|(j, id)| gid_of(id, &at(&format!("supplementary_groups[{j}]"))))
                .collect::<Result<Vec<u32>>>()?,
        ),
        (None, Some(u)) => Some(user_groups(u, gid, &at("user"))?),
        // A group without a user drops the host's groups, as systemd's `Group=` does.
        (None, None) => spec.group.as_ref().map(|_| Vec::new()),
    };
    let mut attrs = Attributes {
        rlimits: rlimits(spec, &at)?,
        umask: spec.umask.as_deref().and_then(parse_umask),
        no_new_privileges: spec.no_new_privileges,
        ..Attributes::default()
    };
    attrs.uid = user.map(|u| u.uid).filter(|&u| !is_own_uid(u));
    attrs.gid = gid.filter(|&g| !is_own_gid(g));
    attrs.groups = groups.filter(|g| !are_own_groups(g, None));
    // A host that may not call setgroups can still name itself: its groups may differ from the
    // user's by the primary group alone (`setpriv --clear-groups`, or a user database that
    // lists it), which changes nothing the worker may do.
    let primary = gid.unwrap_or_else(|| unistd::getegid().as_raw());
    if attrs
        .groups
        .as_ref()
        .is_some_and(|g| are_own_groups(g, Some(primary)))
        && !has_capability(CAP_SETGID)
    {
        attrs.groups = None;
    }
    check_privilege(&attrs, &at)?;
    Ok(attrs)
}

/// A resolved `user`: its uid, and (from the user database) its primary gid and name.
struct UserEntry {
    uid: u32,
    gid: Option<u32>,
    name: Option<String>,
}

fn user_of(id: &Id, at: &str) -> Result<UserEntry> {
    let found = match id.number() {
        Some(uid) => User::from_uid(Uid::from_raw(uid)),
        None => User::from_name(&id.to_string()),
    }
    .map_err(|e| Error::os(format!("{at}: looking up '{id}'"), e.into()))?;
    match (found, id.number()) {
        (Some(u), _) => Ok(UserEntry {
            uid: u.uid.as_raw(),
            gid: Some(u.gid.as_raw()),
            name: Some(u.name),
        }),
        (None, Some(uid)) => Ok(UserEntry {
            uid,
            gid: None,
            name: None,
        }),
        (None, None) => Err(Error::InvalidConfig(format!("{at}: no user \"{id}\""))),
    }
}

fn gid_of(id: &Id, at: &str) -> Result<u32> {
    if let Some(gid) = id.number() {
        return Ok(gid);
    }
    match Group::from_name(&id.to_string()) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(Error::InvalidConfig(format!("{at}: no group \"{id}\""))),
        Err(e) => Err(Error::os(format!("{at}: looking up '{id}'"), e.into())),
    }
}

/// The user's groups as `initgroups` would set them (`getgrouplist`, `gid` among them).
fn user_groups(user: &UserEntry, gid: Option<u32>, at: &str) -> Result<Vec<u32>> {
    let (Some(name), Some(gid)) = (&user.name, gid) else {
        return Ok(gid.into_iter().collect());
    };
    let name = CString::new(name.as_str())
        .map_err(|_| Error::InvalidConfig(format!("{at}: the user's name holds a NUL")))?;
    let list = unistd::getgrouplist(&name, Gid::from_raw(gid))
        .map_err(|e| Error::os(format!("{at}: getgrouplist"), e.into()))?;
    Ok(list.into_iter().map(Gid::as_raw).collect())
}

fn is_own_uid(uid: u32) -> bool {
    unistd::getuid().as_raw() == uid && unistd::geteuid().as_raw() == uid
}

fn is_own_gid(gid: u32) -> bool {
    unistd::getgid().as_raw() == gid && unistd::getegid().as_raw() == gid
}

/// Whether `groups` are this process's supplementary groups already; with `aside`, that gid
/// (the worker's primary group) is left out of both lists, since being in one's primary group
/// grants nothing more.
fn are_own_groups(groups: &[u32], aside: Option<u32>) -> bool {
    let Ok(own) = unistd::getgroups() else {
        return false;
    };
    let set = |list: &mut Vec<u32>| {
        list.retain(|&g| Some(g) != aside);
        list.sort_unstable();
        list.dedup();
    };
    let mut own: Vec<u32> = own.into_iter().map(Gid::as_raw).collect();
    let mut wanted = groups.to_vec();
    set(&mut own);
    set(&mut wanted);
    own == wanted
}

/// `MPSUP_ERR_UNSUPPORTED` for a change this process has not the capability to make.
fn check_privilege(attrs: &Attributes, at: &dyn Fn(&str) -> String) -> Result<()> {
    let lacking = |key: &str, what: String, cap: &str| {
        Error::Unsupported(format!(
            "{}: {what} needs {cap}, which this process (uid {}) does not have (EPERM)",
            at(key),
            unistd::geteuid()
        ))
    };
    if let Some(uid) = attrs.uid {
        if !has_capability(CAP_SETUID) {
            return Err(lacking(
                "user",
                format!("running as uid {uid}"),
                "CAP_SETUID",
            ));
        }
    }
    if let Some(gid) = attrs.gid {
        if !has_capability(CAP_SETGID) {
            return Err(lacking(
                "group",
                format!("running as gid {gid}"),
                "CAP_SETGID",
            ));
        }
    }
    if let Some(groups) = &attrs.groups {
        if !has_capability(CAP_SETGID) {
            return Err(lacking(
                "supplementary_groups",
                format!("setting the supplementary groups {groups:?}"),
                "CAP_SETGID",
            ));
        }
    }
    Ok(())
}

/// The limits to set, each checked: a hard limit above this process's own needs
/// `CAP_SYS_RESOURCE`.
fn rlimits(spec: &GroupSpec, at: &dyn Fn(&str) -> String) -> Result<Vec<(&'static str, u64, u64)>> {
    let mut out = Vec::new();
    for (name, limit) in spec.rlimits.given() {
        let (soft, hard) = limit.soft_hard();
        let (_, own_hard) = getrlimit(resource(name)).map_err(|e| {
            Error::os(
                format!("{}: getrlimit", at(&format!("rlimits.{name}"))),
                e.into(),
            )
        })?;
        if hard > own_hard && !has_capability(CAP_SYS_RESOURCE) {
            return Err(Error::Unsupported(format!(
                "{}: a hard limit of {hard} is above this process's {own_hard} and needs \
                 CAP_SYS_RESOURCE (EPERM)",
                at(&format!("rlimits.{name}"))
            )));
        }
        out.push((name, soft, hard));
    }
    Ok(out)
}

fn resource(name: &str) -> Resource {
    match name {
        "nofile" => Resource::RLIMIT_NOFILE,
        "core" => Resource::RLIMIT_CORE,
        "nproc" => Resource::RLIMIT_NPROC,
        "as" => Resource::RLIMIT_AS,
        "memlock" => Resource::RLIMIT_MEMLOCK,
        "stack" => Resource::RLIMIT_STACK,
        "cpu" => Resource::RLIMIT_CPU,
        // "fsize", the last of the names `Rlimits::given` gives.
        _ => Resource::RLIMIT_FSIZE,
    }
}
