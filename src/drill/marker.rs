//! The recover side of `rescue drill`: when the rescue system was booted
//! with `rescue.drill` on its kernel command line (only `rescue drill`
//! does that), recovery installs a one-shot systemd unit in the recovered
//! system. At its first boot the unit prints `RESCUE-DRILL-BOOTED host=...`
//! and the results of the user's checks on the serial console, removes
//! itself, and powers the machine off. The drill waits for those lines.
//!
//! The checks travel on the same kernel command line, one
//! `rescue.drill.check=HEX` word each (hex of the command's bytes, so no
//! quoting survives or breaks anything on the way).
//!
//! The unit removes its files before it reports: if the recovered disks
//! are kept (`rescue drill --keep`) they boot normally afterwards.

use std::path::Path;

use anyhow::{Context, Result};

/// The word on the rescue kernel command line that asks for the marker.
pub const DRILL_WORD: &str = "rescue.drill";
/// Prefix of a user check on the kernel command line.
pub const CHECK_PREFIX: &str = "rescue.drill.check=";

const UNIT_NAME: &str = "rescue-drill.service";
const STATE_DIR: &str = "var/lib/rescue-drill";

/// What the drill asked for, from the rescue kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillRequest {
    pub checks: Vec<String>,
}

/// `Some` when `cmdline` has `rescue.drill`; the checks decoded in order.
pub fn request_from_cmdline(cmdline: &str) -> Result<Option<DrillRequest>> {
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    if !words.contains(&DRILL_WORD) {
        return Ok(None);
    }
    let mut checks = Vec::new();
    for w in words {
        if let Some(h) = w.strip_prefix(CHECK_PREFIX) {
            let bytes = hex::decode(h).with_context(|| format!("the drill check {w:?} on the kernel command line is not hex"))?;
            checks.push(String::from_utf8(bytes).with_context(|| format!("the drill check {w:?} is not UTF-8"))?);
        }
    }
    Ok(Some(DrillRequest { checks }))
}

/// The kernel command line words that carry `checks` (the drill side).
pub fn cmdline_words(checks: &[String]) -> Vec<String> {
    std::iter::once(DRILL_WORD.to_string()).chain(checks.iter().map(|c| format!("{CHECK_PREFIX}{}", hex::encode(c.as_bytes())))).collect()
}

/// Called once at the end of the finalize phase of `rescue recover`: does
/// nothing unless this rescue system was booted by `rescue drill`.
pub fn install_if_drill(root: &Path) -> Result<Vec<String>> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    match request_from_cmdline(&cmdline)? {
        None => Ok(Vec::new()),
        Some(req) => {
            install(root, &req)?;
            tracing::info!("drill: installed the {UNIT_NAME} boot marker with {} check(s) in {}", req.checks.len(), root.display());
            Ok(vec![format!("drill: installed the one-shot {UNIT_NAME} that reports the first boot and powers off")])
        }
    }
}

/// Write the unit, its script and the checks into the tree at `root`.
pub fn install(root: &Path, req: &DrillRequest) -> Result<()> {
    let has_systemd =
        ["usr/lib/systemd/systemd", "lib/systemd/systemd"].iter().any(|p| crate::target::beneath(root, p).is_ok_and(|p| std::fs::symlink_metadata(p).is_ok()));
    if !has_systemd {
        anyhow::bail!(
            "rescue drill: the recovered system has no systemd (no /usr/lib/systemd/systemd), so the drill's boot marker \
             cannot be installed; the drill cannot tell whether it boots"
        );
    }
    let state = crate::target::beneath(root, STATE_DIR)?;
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    for (i, c) in req.checks.iter().enumerate() {
        let p = state.join(format!("check-{}", i + 1));
        crate::util::write_atomic(&p, format!("{c}\n").as_bytes(), 0o700)?;
    }
    crate::util::write_atomic(&state.join("run"), script(req.checks.len()).as_bytes(), 0o755)?;
    let units = crate::target::beneath(root, "etc/systemd/system")?;
    let wants = units.join("multi-user.target.wants");
    std::fs::create_dir_all(&wants).with_context(|| format!("creating {}", wants.display()))?;
    crate::util::write_atomic(&units.join(UNIT_NAME), UNIT.as_bytes(), 0o644)?;
    let link = wants.join(UNIT_NAME);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("/etc/systemd/system/{UNIT_NAME}"), &link).with_context(|| format!("creating {}", link.display()))?;
    Ok(())
}

/// After multi-user.target: the marker proves the system came all the way up.
const UNIT: &str = "\
# Installed by `rescue recover` for `rescue drill`; removes itself when it has run.
[Unit]
Description=rescue drill: report the first boot of the recovered system, then power off
After=multi-user.target
ConditionPathExists=/var/lib/rescue-drill/run

[Service]
Type=oneshot
ExecStart=/var/lib/rescue-drill/run
StandardOutput=journal
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
";

/// The script the unit runs. Output goes straight to the first serial port,
/// whatever the recovered system's console settings are.
fn script(checks: usize) -> String {
    format!(
        r#"#!/bin/sh
# rescue drill boot marker (see the unit rescue-drill.service). Runs once.
out=/dev/ttyS0
[ -w "$out" ] || out=/dev/console
dir=/var/lib/rescue-drill
rm -f /etc/systemd/system/multi-user.target.wants/{UNIT_NAME} /etc/systemd/system/{UNIT_NAME}
failed=$(systemctl list-units --state=failed --no-legend --plain 2>/dev/null | wc -l)
state=$(systemctl is-system-running 2>/dev/null)
# The SecureBoot variable: 4 bytes of attributes, then the value (1 = enforced).
sb=off
[ -d /sys/firmware/efi ] || sb=bios
[ "$(od -An -t u1 -j 4 -N 1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c 2>/dev/null | tr -d ' ')" = 1 ] && sb=on
echo "RESCUE-DRILL-BOOTED host=$(hostname) kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime) failed-units=$failed state=$state secure-boot=$sb" >"$out"
n=0 passed=0
while [ $n -lt {checks} ]; do
  n=$((n + 1))
  if command -v timeout >/dev/null; then
    timeout 600 sh "$dir/check-$n" >"$dir/out-$n" 2>&1 </dev/null
  else
    sh "$dir/check-$n" >"$dir/out-$n" 2>&1 </dev/null
  fi
  rc=$?
  [ $rc -eq 0 ] && passed=$((passed + 1))
  tail -n 5 "$dir/out-$n" | while IFS= read -r l; do echo "RESCUE-DRILL-OUT $n $l"; done >"$out"
  echo "RESCUE-DRILL-CHECK $n rc=$rc" >"$out"
done
echo "RESCUE-DRILL-DONE checks=$n passed=$passed" >"$out"
rm -rf "$dir"
sync
systemctl poweroff --no-block || poweroff -f
"#
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checks_round_trip_through_the_kernel_command_line() {
        let checks = vec!["systemctl is-active ssh".to_string(), "test -s /srv/data/'a b'; echo \"$x\"".to_string()];
        let line = format!("console=ttyS0,115200 quiet {} unattended", cmdline_words(&checks).join(" "));
        assert_eq!(request_from_cmdline(&line).unwrap(), Some(DrillRequest { checks }));
        assert_eq!(request_from_cmdline("quiet unattended rescue.drillx").unwrap(), None);
        assert_eq!(request_from_cmdline("rescue.drill").unwrap(), Some(DrillRequest { checks: vec![] }));
        assert!(request_from_cmdline("rescue.drill rescue.drill.check=zz").is_err());
    }

    #[test]
    fn install_writes_unit_link_script_and_checks() {
        let d = tempfile::tempdir().unwrap();
        let req = DrillRequest { checks: vec!["true".into(), "test -f /etc/hostname".into()] };
        let e = install(d.path(), &req).unwrap_err();
        assert!(format!("{e:#}").contains("no systemd"), "{e:#}");
        std::fs::create_dir_all(d.path().join("usr/lib/systemd")).unwrap();
        std::fs::write(d.path().join("usr/lib/systemd/systemd"), "").unwrap();
        install(d.path(), &req).unwrap();
        let unit = std::fs::read_to_string(d.path().join("etc/systemd/system/rescue-drill.service")).unwrap();
        assert!(unit.contains("ExecStart=/var/lib/rescue-drill/run") && unit.contains("WantedBy=multi-user.target"));
        let link = std::fs::read_link(d.path().join("etc/systemd/system/multi-user.target.wants/rescue-drill.service")).unwrap();
        assert_eq!(link, Path::new("/etc/systemd/system/rescue-drill.service"));
        let run = std::fs::read_to_string(d.path().join("var/lib/rescue-drill/run")).unwrap();
        assert!(run.contains("RESCUE-DRILL-BOOTED host=") && run.contains("-lt 2 ]") && run.contains("secure-boot=$sb"), "{run}");
        assert_eq!(std::fs::read_to_string(d.path().join("var/lib/rescue-drill/check-2")).unwrap(), "test -f /etc/hostname\n");
        // Installing again (a second recovery of the same tree) replaces it.
        install(d.path(), &req).unwrap();
    }

    #[test]
    fn the_script_is_valid_shell() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run");
        std::fs::write(&p, script(3)).unwrap();
        crate::cmd::Cmd::new("sh").arg("-n").arg(&p).run().unwrap();
    }
}
