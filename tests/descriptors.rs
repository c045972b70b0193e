//! Every descriptor the library opens is close-on-exec: a program the host starts itself with
//! `system()`, which does not use the library, inherits none of them. (The spawn step closes
//! leaked descriptors in workers, which would hide the library's own leaks: only a child that
//! the library does not spawn shows them.)

mod common;
mod hosts;

use std::process::Command;

use common::*;
use hosts::*;

#[test]
fn a_program_the_host_starts_with_system_inherits_no_library_descriptor() {
    let lister = build_c("list_fds", &["tests/programs/list_fds.c"], false, &[]);
    let host = build_c(
        "descriptors_host",
        &["tests/programs/descriptors_host.c"],
        true,
        &[],
    );
    let dir = Scratch::new("descriptors");
    let mut child = Guard::new(
        Command::new(&host)
            .arg(&lister)
            .arg(dir.path())
            .spawn()
            .unwrap(),
    );
    let status = child.wait_within(HANG).expect("the host ends");
    assert!(status.success(), "{status:?}");
    let listing = read(&dir.join("fds"));
    let fds: Vec<&str> = listing.lines().collect();
    let numbers: Vec<&str> = fds
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(numbers, ["0", "1", "2"], "inherited:\n{listing}");
}
