//! The outcome of a drill: pass/fail, the measured recovery time per phase,
//! the checks; as text, JSON (serde) and a node_exporter textfile.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::disks::DrillDisk;

/// A timed part of the drill. The top-level phases follow each other and
/// add up to the RTO: `rescue-boot` (VM start to the start of the
/// unattended recovery), `recover` (recovery start to its end),
/// `reboot` (end of recovery to the start of the recovered system's VM),
/// `first-boot` (to the recovered system's marker).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Phase {
    pub name: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckResult {
    pub command: String,
    /// Exit status in the recovered system; `None` when it never reported.
    pub rc: Option<i32>,
    /// The last lines it printed.
    pub output: Vec<String>,
}

/// What a `--secure-boot` drill saw: whether each system read Secure Boot
/// on from its own SecureBoot EFI variable (`None`: it never said).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SecureBootSeen {
    /// The rescue system's `RESCUE-SECUREBOOT on|off` line.
    pub rescue: Option<bool>,
    /// The recovered system's `secure-boot=on|off` in its boot marker.
    pub recovered: Option<bool>,
}

impl SecureBootSeen {
    /// Why a drill that asked for Secure Boot cannot count as one: a system
    /// that booted with it off (or never said) means the firmware did not
    /// enforce it, and the drill proved nothing about enforcing machines.
    pub fn failure(&self) -> Option<String> {
        let said = |v: Option<bool>| match v {
            Some(true) => "on",
            Some(false) => "off",
            None => "not reported",
        };
        match (self.rescue, self.recovered) {
            (Some(true), Some(true)) => None,
            (Some(true), None) => {
                Some("--secure-boot: the recovered system did not report its Secure Boot state (secure-boot= in its boot marker)".to_string())
            }
            (r, c) => Some(format!(
                "--secure-boot: Secure Boot was not enforced (rescue system: {}, recovered system: {}); the drill does not count as one under enforcing firmware",
                said(r),
                said(c)
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DrillResult {
    /// `pass` or `fail`.
    pub result: String,
    pub host: String,
    pub iso: String,
    pub firmware: String,
    /// With `--secure-boot`: what the two systems said about Secure Boot.
    pub secure_boot: Option<SecureBootSeen>,
    /// RFC 3339 start of the drill.
    pub started: String,
    /// Unix time at the end of the drill.
    pub timestamp: f64,
    pub disks: Vec<DrillDisk>,
    /// Phases that completed (or were cut short by the failure), in order.
    pub phases: Vec<Phase>,
    /// The recovery's own phases (verify, plan, storage, restore, finalize), from its console output.
    pub recover_phases: Vec<Phase>,
    /// Rescue boot to first boot of the recovered system: the measured RTO. Only when the drill passed.
    pub rto_seconds: Option<f64>,
    /// What the recovered system reported (`host`, `kernel`, `uptime`, `failed-units`, `state`).
    pub booted: Option<std::collections::BTreeMap<String, String>>,
    pub checks: Vec<CheckResult>,
    /// Why it failed.
    pub failure: Option<String>,
    /// The last console lines of the VM that failed.
    pub console_tail: Vec<String>,
    /// The work directory, when kept (`--keep`).
    pub kept: Option<String>,
}

impl DrillResult {
    pub fn passed(&self) -> bool {
        self.result == "pass"
    }

    /// The report for a person.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\nDrill of {} from {}: {}", self.host, self.iso, if self.passed() { "PASS" } else { "FAIL" });
        for p in &self.phases {
            let _ = writeln!(s, "  {:<12} {:>8.1} s", p.name, p.seconds);
            if p.name == "recover" {
                for r in &self.recover_phases {
                    let _ = writeln!(s, "    {:<10} {:>8.1} s", r.name, r.seconds);
                }
            }
        }
        if let Some(rto) = self.rto_seconds {
            let _ = writeln!(s, "  {:<12} {:>8.1} s  (RTO: rescue boot to the recovered system up)", "total", rto);
        }
        if let Some(sb) = &self.secure_boot {
            let on = |v: Option<bool>| match v {
                Some(true) => "on",
                Some(false) => "OFF",
                None => "?",
            };
            let verdict = if sb.failure().is_none() { "enforced" } else { "NOT enforced" };
            let _ = writeln!(s, "  secure boot: {verdict} (rescue system {}, recovered system {})", on(sb.rescue), on(sb.recovered));
        }
        if let Some(b) = &self.booted {
            let f = |k: &str| b.get(k).map(String::as_str).unwrap_or("?");
            let _ = writeln!(s, "  booted: host {} kernel {} failed units {} state {}", f("host"), f("kernel"), f("failed-units"), f("state"));
        }
        for c in &self.checks {
            let status = match c.rc {
                Some(0) => "ok".to_string(),
                Some(rc) => format!("FAILED (exit {rc})"),
                None => "did not run".to_string(),
            };
            let _ = writeln!(s, "  check {:?}: {status}", c.command);
            if c.rc != Some(0) {
                for l in &c.output {
                    let _ = writeln!(s, "      {l}");
                }
            }
        }
        if let Some(f) = &self.failure {
            if !self.console_tail.is_empty() {
                let _ = writeln!(s, "  last console lines:");
                for l in &self.console_tail {
                    let _ = writeln!(s, "    | {l}");
                }
            }
            let _ = writeln!(s, "  failure: {f}");
        }
        if let Some(k) = &self.kept {
            let _ = writeln!(s, "  kept: {k}");
        }
        s
    }

    /// The node_exporter textfile (Prometheus text format 0.0.4).
    pub fn prometheus(&self) -> String {
        prometheus_text(&self.host, self.passed(), self.rto_seconds, &self.phases, &self.recover_phases, self.timestamp)
    }
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// The metrics of one drill. Used for failures before any phase ran too
/// (success 0, no RTO, no phases).
pub fn prometheus_text(host: &str, success: bool, rto: Option<f64>, phases: &[Phase], recover: &[Phase], timestamp: f64) -> String {
    let h = label(host);
    let mut s = String::new();
    let _ = writeln!(s, "# HELP rescue_drill_success Whether the last recovery drill passed (1) or failed (0).");
    let _ = writeln!(s, "# TYPE rescue_drill_success gauge");
    let _ = writeln!(s, "rescue_drill_success{{host=\"{h}\"}} {}", u8::from(success));
    if let Some(rto) = rto {
        let _ = writeln!(s, "# HELP rescue_drill_rto_seconds Measured recovery time of the last passed drill: rescue boot to the recovered system up.");
        let _ = writeln!(s, "# TYPE rescue_drill_rto_seconds gauge");
        let _ = writeln!(s, "rescue_drill_rto_seconds{{host=\"{h}\"}} {rto:.1}");
    }
    if !phases.is_empty() {
        let _ = writeln!(s, "# HELP rescue_drill_phase_seconds Time of each phase of the last drill (recover.* are parts of recover).");
        let _ = writeln!(s, "# TYPE rescue_drill_phase_seconds gauge");
        for p in phases {
            let _ = writeln!(s, "rescue_drill_phase_seconds{{host=\"{h}\",phase=\"{}\"}} {:.1}", label(&p.name), p.seconds);
        }
        for p in recover {
            let _ = writeln!(s, "rescue_drill_phase_seconds{{host=\"{h}\",phase=\"recover.{}\"}} {:.1}", label(&p.name), p.seconds);
        }
    }
    let _ = writeln!(s, "# HELP rescue_drill_timestamp_seconds When the last drill ended (Unix time).");
    let _ = writeln!(s, "# TYPE rescue_drill_timestamp_seconds gauge");
    let _ = writeln!(s, "rescue_drill_timestamp_seconds{{host=\"{h}\"}} {timestamp:.0}");
    s
}

/// Write the textfile atomically (a temporary file in the same directory,
/// renamed over it), so node_exporter never reads half a file.
pub fn write_prometheus(path: &Path, text: &str) -> Result<()> {
    crate::util::write_atomic(path, text.as_bytes(), 0o644)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn result(pass: bool) -> DrillResult {
        DrillResult {
            result: if pass { "pass" } else { "fail" }.into(),
            host: "web\"1".into(),
            iso: "/var/lib/rescue/output/rescue-web1.iso".into(),
            firmware: "bios".into(),
            secure_boot: None,
            started: "2026-11-26T11:00:00Z".into(),
            timestamp: 1795690000.4,
            disks: vec![],
            phases: vec![Phase { name: "rescue-boot".into(), seconds: 61.25 }, Phase { name: "recover".into(), seconds: 120.0 }],
            recover_phases: vec![Phase { name: "restore".into(), seconds: 80.0 }],
            rto_seconds: pass.then_some(300.04),
            booted: None,
            checks: vec![CheckResult { command: "false".into(), rc: Some(1), output: vec!["x".into()] }],
            failure: (!pass).then(|| "check 1 failed".to_string()),
            console_tail: vec!["last".into()],
            kept: None,
        }
    }

    #[test]
    fn prometheus_textfile() {
        let t = result(true).prometheus();
        let expected = "\
# HELP rescue_drill_success Whether the last recovery drill passed (1) or failed (0).
# TYPE rescue_drill_success gauge
rescue_drill_success{host=\"web\\\"1\"} 1
# HELP rescue_drill_rto_seconds Measured recovery time of the last passed drill: rescue boot to the recovered system up.
# TYPE rescue_drill_rto_seconds gauge
rescue_drill_rto_seconds{host=\"web\\\"1\"} 300.0
# HELP rescue_drill_phase_seconds Time of each phase of the last drill (recover.* are parts of recover).
# TYPE rescue_drill_phase_seconds gauge
rescue_drill_phase_seconds{host=\"web\\\"1\",phase=\"rescue-boot\"} 61.2
rescue_drill_phase_seconds{host=\"web\\\"1\",phase=\"recover\"} 120.0
rescue_drill_phase_seconds{host=\"web\\\"1\",phase=\"recover.restore\"} 80.0
# HELP rescue_drill_timestamp_seconds When the last drill ended (Unix time).
# TYPE rescue_drill_timestamp_seconds gauge
rescue_drill_timestamp_seconds{host=\"web\\\"1\"} 1795690000
";
        assert_eq!(t, expected);
        let f = result(false).prometheus();
        assert!(f.contains("rescue_drill_success{host=\"web\\\"1\"} 0\n") && !f.contains("rto"), "{f}");
        // Every sample line: name{labels} value.
        for l in f.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            v.parse::<f64>().unwrap();
        }
    }

    #[test]
    fn the_textfile_is_replaced_atomically() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rescue_drill.prom");
        write_prometheus(&p, "a 1\n").unwrap();
        write_prometheus(&p, &result(true).prometheus()).unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().starts_with("# HELP rescue_drill_success"));
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn json_fields() {
        let v: serde_json::Value = serde_json::to_value(result(false)).unwrap();
        assert_eq!(v["result"], "fail");
        assert_eq!(v["rto-seconds"], serde_json::Value::Null);
        assert_eq!(v["phases"][0]["name"], "rescue-boot");
        assert_eq!(v["recover-phases"][0]["seconds"], 80.0);
        assert_eq!(v["checks"][0]["rc"], 1);
        assert_eq!(v["failure"], "check 1 failed");
        assert_eq!(v["console-tail"][0], "last");
        let t = result(false).text();
        assert!(t.contains("FAIL") && t.contains("check \"false\": FAILED (exit 1)") && t.contains("| last"), "{t}");
    }

    #[test]
    fn secure_boot_counts_only_when_both_systems_saw_it_on() {
        let seen = |rescue, recovered| SecureBootSeen { rescue, recovered };
        assert_eq!(seen(Some(true), Some(true)).failure(), None);
        // Firmware that did not enforce (a fallback to plain OVMF): the drill fails.
        for (r, c) in [(Some(false), Some(true)), (Some(true), Some(false)), (None, Some(true)), (Some(false), Some(false))] {
            let f = seen(r, c).failure().unwrap();
            assert!(f.contains("Secure Boot was not enforced"), "{f}");
        }
        assert!(seen(Some(true), None).failure().unwrap().contains("did not report"));
        let mut r = result(true);
        r.secure_boot = Some(seen(Some(true), Some(true)));
        assert!(r.text().contains("secure boot: enforced (rescue system on, recovered system on)"), "{}", r.text());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!((v["secure-boot"]["rescue"].as_bool(), v["secure-boot"]["recovered"].as_bool()), (Some(true), Some(true)));
        r.secure_boot = Some(seen(Some(false), Some(true)));
        assert!(r.text().contains("secure boot: NOT enforced (rescue system OFF"), "{}", r.text());
    }
}
