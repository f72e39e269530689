//! `rk3s check-config` on this machine (which has everything rk3s needs),
//! through the real binary.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{RK3S, run, stderr, stdout};

fn check_config(args: &[&str]) -> std::process::Output {
    run(
        Command::new(RK3S).arg("check-config").args(args),
        None,
        Duration::from_secs(60),
    )
}

#[test]
fn this_machine_has_everything_required() {
    let o = check_config(&[]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "check-config failed ({}):\n{out}\n{}",
        o.status,
        stderr(&o)
    );
    assert!(out.starts_with("rk3s check-config: kernel "), "{out}");
    assert!(
        out.contains("\nOK: everything rk3s needs is present"),
        "{out}"
    );
    // Every group, and a verdict for each thing the issue names.
    for heading in [
        "\nNamespaces:\n",
        "\nCgroups:\n",
        "\nFile systems:\n",
        "\nNetworking:\n",
        "\nTools:\n",
    ] {
        assert!(out.contains(heading), "no {heading:?} in:\n{out}");
    }
    for thing in [
        "network namespaces",
        "PID namespaces",
        "cgroup file system",
        "cgroup controller memory",
        "overlayfs",
        "veth pairs",
        "bridges",
        "nftables",
        "VXLAN",
        "nft (the nftables command)",
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(thing))
            .unwrap_or_else(|| panic!("no line about {thing}:\n{out}"));
        assert!(line.trim_start().starts_with("ok "), "{line}");
    }
    // This machine mounts cgroups v1 controllers plus a v2 hierarchy.
    let cg = out
        .lines()
        .find(|l| l.contains("cgroup file system"))
        .unwrap();
    assert!(cg.contains("cgroups v1 (hybrid"), "{cg}");
    // The nft binary is found where it is.
    assert!(out.contains("found at /usr/sbin/nft"), "{out}");
}

#[test]
fn help_and_bad_arguments() {
    let o = check_config(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("Usage: rk3s check-config"));
    let o = check_config(&["--bogus"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unexpected argument \"--bogus\""));
}

/// With a PATH that lacks nft, the verdict is FAIL with the fix, exit 1.
/// (check-config always looks in the sbin directories too, so hide them by
/// running it in a mount namespace where /usr/sbin and /sbin are empty.)
#[test]
fn missing_nft_fails_with_the_fix() {
    let script = "mount -t tmpfs none /usr/sbin && \
                  if [ -d /sbin ] && [ ! -L /sbin ]; then mount -t tmpfs none /sbin; fi && \
                  exec \"$0\" check-config";
    let o = run(
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                script,
            ])
            .arg(RK3S)
            .env("PATH", "/usr/bin:/bin"),
        None,
        Duration::from_secs(60),
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", stderr(&o));
    let line = out
        .lines()
        .position(|l| l.contains("nft (the nftables command)"))
        .unwrap_or_else(|| panic!("{out}"));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[line].trim_start().starts_with("missing "),
        "{}",
        lines[line]
    );
    assert!(
        lines[line + 1].contains("fix: install the nftables package"),
        "{out}"
    );
    assert!(out.contains("FAIL: 1 required feature(s) missing"), "{out}");
}
