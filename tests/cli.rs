//! The command line as a user meets it: help with examples on every command,
//! exit codes, logs, man pages and completions.

#![allow(clippy::unwrap_used)]

mod common;

use clap::CommandFactory;
use common::*;

#[test]
fn every_command_has_long_help_with_an_example() {
    fn walk(cmd: &clap::Command, path: String, missing: &mut Vec<String>) {
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            if sub.has_subcommands() {
                walk(sub, p, missing);
            } else if !sub.get_after_long_help().map(|h| h.to_string().contains("Example")).unwrap_or(false) {
                missing.push(p);
            }
        }
    }
    let mut missing = Vec::new();
    walk(&rescue::cli::Cli::command(), "rescue".into(), &mut missing);
    assert!(missing.is_empty(), "commands without examples in --help: {missing:?}");
}

#[test]
fn help_and_version_exit_zero_usage_errors_exit_two() {
    let tmp = tempfile::tempdir().unwrap();
    let out = rescue(tmp.path(), &["savelayout", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--root"));
    let out = rescue(tmp.path(), &["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let out = rescue(tmp.path(), &["savelayout", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = rescue(tmp.path(), &["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_config_is_an_input_error_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "log-dir = \"/tmp/x\"\n[capture]\nexclude-disk = [\"sdz\"]\n").unwrap();
    let out = std::process::Command::new(rescue_bin()).arg("--config").arg(&cfg).arg("dump").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `exclude-disk`"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    // A config file named explicitly must exist.
    let out = std::process::Command::new(rescue_bin()).args(["--config", "/nonexistent/rescue.toml", "dump"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dump_shows_config_and_tools_and_logs_to_the_log_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let out = rescue(tmp.path(), &["--json", "dump"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["config"]["log-dir"], format!("{}/log", tmp.path().display()));
    assert!(j["tools"].as_array().unwrap().iter().any(|t| t["program"] == "sfdisk"));
    let log = std::fs::read_to_string(tmp.path().join("log/rescue.log")).expect("log file written");
    assert!(log.contains("rescue started"), "{log}");
    // With a saved descriptor: what recovering it needs (needs::recovery), here mkfs.ext2 for an ext2 /boot.
    std::fs::create_dir_all(tmp.path().join("state")).unwrap();
    std::fs::copy(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts/mbr-logical.toml"), tmp.path().join("state/layout.toml")).unwrap();
    let out = rescue(tmp.path(), &["--json", "dump"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ext2 = j["tools"].as_array().unwrap().iter().find(|t| t["program"] == "mkfs.ext2").cloned().unwrap_or_default();
    assert!(ext2["purpose"].as_str().unwrap_or("").contains("ext2 filesystem on sda1") && ext2["package"] == "e2fsprogs", "{ext2}");
    let grub = j["tools"].as_array().unwrap().iter().find(|t| t["program"] == "grub-install").cloned().unwrap_or_default();
    assert!(grub["purpose"].as_str().unwrap_or("").contains("in the recovered system"), "{grub}");
}

#[test]
fn man_pages_and_completions() {
    let tmp = tempfile::tempdir().unwrap();
    let man = tmp.path().join("man");
    let out = rescue(tmp.path(), &["manpages", man.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_to_string(man.join("rescue-savelayout.8")).unwrap();
    assert!(page.contains(".TH"), "roff page");
    assert!(man.join("rescue.8").exists());
    for shell in ["bash", "zsh", "fish"] {
        let out = rescue(tmp.path(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("savelayout"), "{shell}");
    }
}

/// Every configuration key (serialized from the defaults, so a new key cannot
/// be forgotten) appears in docs/config.md under its section.
#[test]
fn every_config_key_is_documented() {
    let doc = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md")).unwrap();
    let v = serde_json::to_value(rescue::config::Config::default()).unwrap();
    let mut missing = Vec::new();
    for (k, val) in v.as_object().unwrap() {
        match val.as_object() {
            Some(section) if k != "mapping" => {
                let Some(at) = doc.find(&format!("## `[{k}]`")) else {
                    missing.push(format!("section [{k}]"));
                    continue;
                };
                let body = &doc[at..];
                let body = &body[..body[3..].find("\n## ").map_or(body.len(), |e| e + 3)];
                for sub in section.keys() {
                    if !body.contains(&format!("| `{sub}` |")) {
                        missing.push(format!("[{k}] {sub}"));
                    }
                }
            }
            _ => {
                if !doc.contains(&format!("`{k}`")) && !doc.contains(&format!("`[{k}]`")) {
                    missing.push(k.clone());
                }
            }
        }
    }
    assert!(missing.is_empty(), "keys missing from docs/config.md: {missing:?}");
}

#[test]
fn a_password_in_the_mount_options_is_never_shown_logged_or_in_an_error() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = local_config(dir);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}[backup]\nmount-options = \"username=alice,password=hunter2,vers=3.0\"\n")).unwrap();
    for args in [&["dump"][..], &["--json", "dump"]] {
        let out = rescue(dir, args);
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{all}");
        assert!(!all.contains("hunter2") && all.contains("username=alice,password=********,vers=3.0"), "{args:?}: {all}");
    }
    // A mount with these options fails (a blank disk): the error and the log name the command, masked.
    let disk = LoopDisk::new(dir, "blank", 8);
    let out = rescue(dir, &["archive", "list", &format!("usb://{}/x.tar.zst", disk.dev)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("password=********") && !err.contains("hunter2"), "{err}");
    let log = std::fs::read_to_string(dir.join("log/rescue.log")).unwrap();
    assert!(log.contains("password=********") && !log.contains("hunter2"), "{log}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(dir.join("log")).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(dir.join("log/rescue.log")).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn methods_without_chains_refuse_incremental_backups_before_connecting() {
    // No server answers at nohost.invalid: the refusal must come first.
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("", &["mkbackuponly", "--url", "nohost.invalid:/srv/b", "--level", "incremental"], &["--level incremental", "the rsync method"]),
        (
            "[backup]\nurl = \"s3://bucket/prefix\"\nfull-every = 3\n[backup.s3]\nendpoint = \"http://nohost.invalid:7480\"\n",
            &["mkbackuponly"],
            &["backup.full-every = 3", "the S3 method (s3://bucket/prefix)"],
        ),
        (
            "[backup]\nmethod = \"bacula\"\n[backup.server]\naddress = \"nohost.invalid\"\n",
            &["mkbackup", "--level", "incremental"],
            &["--level incremental", "a Bacula director"],
        ),
    ];
    for (backup, args, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = local_config(tmp.path());
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str(backup);
        std::fs::write(&cfg, text).unwrap();
        let out = rescue(tmp.path(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for w in *want {
            assert!(err.contains(w), "{args:?}: no '{w}' in: {err}");
        }
        assert!(err.contains("makes only full backups") && err.contains("Nothing was backed up"), "{err}");
    }
}
