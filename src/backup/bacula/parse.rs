//! Reading what bconsole prints: job records (`llist` text from Bacula,
//! `.api 2` JSON from Bareos), the job id a `run`/`restore` queued, the
//! file count a restore selected, and the director's own words when a
//! command did not do what was asked.

use std::collections::BTreeMap;

use serde::Serialize;

/// One catalog record, keys lower-cased (`jobid`, `jobstatus`, `jobfiles`...).
pub type Record = BTreeMap<String, String>;

/// `llist` output of Bacula (and of Bareos in text mode): `Key: value`
/// lines, records separated by blank lines.
pub fn llist_records(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let mut cur = Record::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let t = line.trim_start();
        let Some((key, value)) = t.split_once(':') else { continue };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) || !(value.is_empty() || value.starts_with(' ')) {
            continue;
        }
        let key = key.to_ascii_lowercase();
        // A new record starts with its id even without a blank line between.
        if key == "jobid" && cur.contains_key("jobid") {
            out.push(std::mem::take(&mut cur));
        }
        cur.insert(key, value.trim().to_string());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The records of a Bareos `.api 2` answer: `{"jsonrpc":"2.0","result":{KEY:[{...}]}}`.
/// Every JSON object in the output is read; those without `result.KEY` are skipped.
pub fn json_records(text: &str, key: &str) -> Vec<Record> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices('{') {
        // Only objects that start a line: the answers, not braces inside strings.
        if i > 0 && !text[..i].ends_with('\n') {
            continue;
        }
        let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<serde_json::Value>();
        let Some(Ok(v)) = stream.next() else { continue };
        let Some(items) = v.get("result").and_then(|r| r.get(key)).and_then(|j| j.as_array()) else { continue };
        for item in items {
            let Some(obj) = item.as_object() else { continue };
            out.push(
                obj.iter()
                    .map(|(k, v)| {
                        let s = match v {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        (k.to_ascii_lowercase(), s)
                    })
                    .collect(),
            );
        }
    }
    out
}

/// A job as the catalog records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobInfo {
    pub jobid: u64,
    pub name: String,
    /// `B` backup, `R` restore...
    pub job_type: String,
    /// `F` full, `I` incremental, `D` differential.
    pub level: String,
    /// One letter: `T` ok, `W` ok with warnings, `E`/`e`/`f` errors, `A` cancelled, `R` running...
    pub status: String,
    pub client: String,
    pub fileset: String,
    pub start_time: String,
    pub end_time: String,
    /// Seconds since the epoch at which the job ended (the catalog's JobTDate), when known.
    pub end_epoch: Option<i64>,
    pub files: u64,
    pub bytes: u64,
    pub errors: u64,
}

/// `1,234` or `1234` -> 1234.
pub fn number(s: &str) -> Option<u64> {
    let digits: String = s.trim().chars().filter(|c| *c != ',').collect();
    digits.parse().ok()
}

impl JobInfo {
    pub fn from_record(r: &Record) -> Option<JobInfo> {
        let get = |k: &str| r.get(k).cloned().unwrap_or_default();
        let num = |k: &str| r.get(k).and_then(|v| number(v)).unwrap_or(0);
        Some(JobInfo {
            jobid: r.get("jobid").and_then(|v| number(v))?,
            name: get("name"),
            job_type: get("type"),
            level: get("level"),
            status: get("jobstatus"),
            client: r.get("clientname").or_else(|| r.get("client")).cloned().unwrap_or_default(),
            fileset: get("fileset"),
            start_time: get("starttime"),
            end_time: get("endtime"),
            end_epoch: r.get("jobtdate").and_then(|v| number(v)).filter(|n| *n > 0).map(|n| n as i64),
            files: num("jobfiles"),
            bytes: num("jobbytes"),
            errors: num("joberrors"),
        })
    }

    /// Whether the job has ended (any way).
    pub fn finished(&self) -> bool {
        status_finished(&self.status)
    }

    /// Whether the job ended well (warnings allowed).
    pub fn succeeded(&self) -> bool {
        matches!(self.status.as_str(), "T" | "W")
    }

    pub fn level_name(&self) -> &'static str {
        match self.level.as_str() {
            "F" => "full",
            "I" => "incremental",
            "D" => "differential",
            "B" => "base",
            _ => "other",
        }
    }
}

/// Statuses after which a job changes no more.
pub fn status_finished(s: &str) -> bool {
    matches!(s, "T" | "W" | "E" | "e" | "f" | "A" | "I" | "D")
}

/// The catalog's job status letter in words.
pub fn status_name(s: &str) -> &'static str {
    match s {
        "T" => "completed successfully",
        "W" => "completed with warnings",
        "E" => "terminated with errors",
        "e" => "non-fatal error",
        "f" => "fatal error",
        "A" => "canceled",
        "I" => "incomplete",
        "D" => "verify found differences",
        "C" => "created, not yet running",
        "R" => "running",
        "B" => "blocked",
        "F" => "waiting for the client",
        "S" => "waiting for the storage daemon",
        "m" => "waiting for new media",
        "M" => "waiting for a media mount",
        "s" => "waiting for a storage resource",
        "j" => "waiting for a job resource",
        "c" => "waiting for a client resource",
        "d" => "waiting on the maximum number of jobs",
        "t" => "waiting for its start time",
        "p" => "waiting for higher priority jobs",
        "L" | "i" | "a" | "l" => "committing data",
        _ => "unknown status",
    }
}

/// The id in `Job queued. JobId=12` (what `run` and `restore` print).
pub fn queued_jobid(text: &str) -> Option<u64> {
    text.lines().filter(|l| l.contains("queued")).find_map(|l| {
        let rest = &l[l.find("JobId=")? + "JobId=".len()..];
        number(rest.split(|c: char| !c.is_ascii_digit() && c != ',').next()?)
    })
}

/// `5 files selected to be restored.` -> 5.
pub fn selected_files(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let l = l.trim();
        let (n, rest) = l.split_once(' ')?;
        (rest.starts_with("file selected to be restored") || rest.starts_with("files selected to be restored")).then(|| number(n))?
    })
}

/// Lines of bconsole output that are chatter, not the director's answer.
fn is_chatter(line: &str) -> bool {
    let t = line.trim();
    t.is_empty()
        || t.starts_with("Connecting to Director")
        || t.starts_with("1000 OK")
        || t.starts_with("Enter a period to cancel")
        || t.starts_with("Using Catalog")
        || t.starts_with("Automatically selected Catalog")
        || t.starts_with("You have messages")
        || t.starts_with("You have no messages")
        || t.starts_with("quit")
        || t.starts_with('{') && t.contains("\"api\"")
}

/// What the director said in answer to `command` (the lines after bconsole
/// echoes it), chatter removed, at most the last `max` lines.
/// A command that cannot go on asks (`Select the Client (1-2):`): what it
/// said before the first question is the answer, the question ends it.
pub fn director_answer(text: &str, command: &str, max: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().rposition(|l| l.trim() == command.trim()).map(|i| i + 1).unwrap_or(0);
    let mut kept: Vec<&str> = Vec::new();
    let mut question = None;
    for l in lines[start..].iter().copied().filter(|l| !is_chatter(l)) {
        if is_prompt(l) {
            question = Some(l.split("):").next().unwrap_or(l).trim().to_string() + ")");
            break;
        }
        kept.push(l.trim_end());
    }
    let from = kept.len().saturating_sub(max);
    let mut out = kept[from..].join("\n");
    if let Some(q) = question {
        out.push_str(&format!("\n(and then asked \"{q}\", which an unattended restore cannot answer)"));
    }
    out
}

fn is_prompt(line: &str) -> bool {
    let t = line.trim();
    (t.starts_with("Select ") && t.contains("):")) || t.contains("(yes/mod/no)") || (t.starts_with("Enter ") && t.contains("):"))
}

/// The error and termination lines of a job log (`llist joblog jobid=N` or
/// Bareos JSON `joblog`), in order, without repeats.
pub fn joblog_problems(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        let s = s.trim().trim_end_matches('\\').trim().to_string();
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    };
    for rec in json_records(text, "joblog") {
        for line in rec.get("logtext").map(String::as_str).unwrap_or("").lines() {
            if is_problem(line) {
                add(line);
            }
        }
    }
    for line in text.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix("LogText:").unwrap_or(line);
        if is_problem(line) && !line.contains("\"logtext\"") {
            add(line);
        }
    }
    out
}

fn is_problem(line: &str) -> bool {
    let l = line.trim();
    l.contains("Error:") && !l.contains("Error: Bacula") && !l.contains("Error: Bareos")
        || l.contains("Fatal error")
        || l.contains("ERR=")
        || l.starts_with("Termination:")
        || l.contains("Warning:")
}

/// The running job's counters from `status client=NAME`: (files, bytes).
pub fn running_counters(text: &str, jobid: u64) -> Option<(u64, u64)> {
    let mut in_job = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("JobId") {
            in_job = t.split([' ', '=']).nth(1).and_then(number) == Some(jobid);
            continue;
        }
        if in_job && t.starts_with("Files=") {
            let mut files = None;
            let mut bytes = None;
            for w in t.split_whitespace() {
                if let Some(v) = w.strip_prefix("Files=") {
                    files = number(v);
                } else if let Some(v) = w.strip_prefix("Bytes=") {
                    bytes = number(v);
                }
            }
            return Some((files?, bytes.unwrap_or(0)));
        }
    }
    None
}

/// `2026-01-31` or `2026-01-31 12:00` or `2026-01-31 12:00:00` -> the
/// director's `YYYY-MM-DD HH:MM:SS`; None when it is not such a date.
pub fn director_date(s: &str) -> Option<String> {
    let s = s.trim();
    let (date, time) = match s.split_once([' ', 'T']) {
        Some((d, t)) => (d, t.trim()),
        None => (s, "00:00:00"),
    };
    let d: Vec<&str> = date.split('-').collect();
    let ok_num = |p: &str, len: usize| p.len() == len && p.chars().all(|c| c.is_ascii_digit());
    if d.len() != 3 || !ok_num(d[0], 4) || !ok_num(d[1], 2) || !ok_num(d[2], 2) {
        return None;
    }
    let t: Vec<&str> = time.split(':').collect();
    if !(2..=3).contains(&t.len()) || !t.iter().all(|p| ok_num(p, 2)) {
        return None;
    }
    let secs = t.get(2).copied().unwrap_or("00");
    let (mo, da, h, mi, se) = (number(d[1])?, number(d[2])?, number(t[0])?, number(t[1])?, number(secs)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    Some(format!("{date} {}:{}:{secs}", t[0], t[1]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LLIST: &str = "Connecting to Director 127.0.0.1:19101
1000 OK: 103 rt-dir Version: 9.6.7 (10 December 2020)
Enter a period to cancel a command.
llist jobs client=rt-fd
Automatically selected Catalog: MyCatalog
Using Catalog \"MyCatalog\"
           JobId: 1
             Job: rt-backup.2026-11-26_10.36.50_04
            Name: rt-backup
            Type: B
           Level: F
      ClientName: rt-fd
       JobStatus: T
       StartTime: 2026-11-26 10:36:52
         EndTime: 2026-11-26 10:36:53
        JobTDate: 1795689413
        JobFiles: 5
        JobBytes: 100,006
       JobErrors: 0
         FileSet: rt-set
         Comment: 

           JobId: 3
            Name: rt-backup-fail
            Type: B
           Level: F
      ClientName: rt-fd
       JobStatus: E
        JobFiles: 0
        JobBytes: 0
       JobErrors: 1
         FileSet: rt-set
";

    #[test]
    fn bacula_llist_is_read() {
        let jobs: Vec<JobInfo> = llist_records(LLIST).iter().filter_map(JobInfo::from_record).collect();
        assert_eq!(jobs.len(), 2, "{jobs:?}");
        let j = &jobs[0];
        assert_eq!((j.jobid, j.status.as_str(), j.level_name(), j.files, j.bytes), (1, "T", "full", 5, 100_006));
        assert_eq!(j.end_epoch, Some(1_795_689_413));
        assert!(j.succeeded() && j.finished());
        assert!(!jobs[1].succeeded() && jobs[1].finished());
        assert_eq!(jobs[1].errors, 1);
    }

    #[test]
    fn bareos_json_is_read() {
        let text = r#"{"jsonrpc":"2.0","id":null,"result":{"api":2}}
{
  "jsonrpc": "2.0",
  "id": null,
  "result": {
    "jobs": [
      {"jobid": "7", "job": "backup-web1.2026-01-02_21.00.00_07", "name": "backup-web1", "type": "B", "level": "I",
       "clientname": "web1-fd", "jobstatus": "W", "starttime": "2026-01-02 21:00:02", "endtime": "2026-01-02 21:03:10",
       "jobtdate": "1767387790", "jobfiles": "1234", "jobbytes": "5678901", "joberrors": "0", "fileset": "LinuxAll"}
    ]
  }
}"#;
        let jobs: Vec<JobInfo> = json_records(text, "jobs").iter().filter_map(JobInfo::from_record).collect();
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].jobid, jobs[0].level_name(), jobs[0].files), (7, "incremental", 1234));
        assert!(jobs[0].succeeded());
        let log = r#"{"jsonrpc":"2.0","id":null,"result":{"joblog":[{"time":"2026-01-02 21:00:02","logtext":"bareos-dir JobId 8: Fatal error: No Job status returned from FD.\n"}]}}"#;
        assert_eq!(joblog_problems(log), vec!["bareos-dir JobId 8: Fatal error: No Job status returned from FD."]);
    }

    #[test]
    fn queued_and_selected() {
        let text = "5 files selected to be restored.\n\nUsing Catalog \"MyCatalog\"\nJob queued. JobId=12\nYou have messages.\n";
        assert_eq!(queued_jobid(text), Some(12));
        assert_eq!(selected_files(text), Some(5));
        assert_eq!(selected_files("1,234 files selected to be restored.\n"), Some(1234));
        assert_eq!(selected_files("1 file selected to be restored.\n"), Some(1));
        assert_eq!(queued_jobid("No Full backup before 2026-11-26 10:36:59 found.\n"), None);
    }

    #[test]
    fn director_answer_drops_chatter() {
        let text = "Connecting to Director 127.0.0.1:19101\n1000 OK: 103 rt-dir\nEnter a period to cancel a command.\nrestore client=x\nUsing Catalog \"MyCatalog\"\nNo Full backup before 2026-11-26 10:36:59 found.\nYou have messages.\n";
        assert_eq!(director_answer(text, "restore client=x", 5), "No Full backup before 2026-11-26 10:36:59 found.");
        let asked = "restore client=nosuch-fd\nCould not find Client \"nosuch-fd\": ERR=Client record not found in Catalog.\nDefined Clients:\n     1: rt-fd\nSelect the Client (1-1): quit\nExpected a positive integer, got: quit\n";
        let a = director_answer(asked, "restore client=nosuch-fd", 6);
        assert!(a.starts_with("Could not find Client \"nosuch-fd\""), "{a}");
        assert!(a.ends_with("(and then asked \"Select the Client (1-1)\", which an unattended restore cannot answer)"), "{a}");
    }

    #[test]
    fn joblog_errors_are_picked() {
        let text = " LogText: rt-dir JobId 3: shell command: run BeforeJob \"/bin/false\"\n\\\n LogText: rt-dir JobId 3: Error: Runscript: BeforeJob returned non-zero status=1. ERR=Child exited with code 1\n\\\n LogText: rt-dir JobId 3: Error: Bacula rt-dir 9.6.7 (10Dec20):\n  Termination:            *** Backup Error ***\n";
        assert_eq!(
            joblog_problems(text),
            vec![
                "rt-dir JobId 3: Error: Runscript: BeforeJob returned non-zero status=1. ERR=Child exited with code 1",
                "Termination:            *** Backup Error ***"
            ]
        );
    }

    #[test]
    fn running_counters_from_status_client() {
        let text = "Running Jobs:\nJobId 6 Job rt-restore.2026-11-26_10.50.00_06 is running.\n    Restore Job started: 26-Nov-26 10:50\n    Files=3 Bytes=1,234 AveBytes/sec=100 LastBytes/sec=100\n";
        assert_eq!(running_counters(text, 6), Some((3, 1234)));
        assert_eq!(running_counters(text, 7), None);
    }

    #[test]
    fn dates_for_the_director() {
        assert_eq!(director_date("2026-01-31").as_deref(), Some("2026-01-31 00:00:00"));
        assert_eq!(director_date("2026-01-31 12:30").as_deref(), Some("2026-01-31 12:30:00"));
        assert_eq!(director_date("2026-01-31T12:30:05").as_deref(), Some("2026-01-31 12:30:05"));
        assert_eq!(director_date("yesterday"), None);
        assert_eq!(director_date("2026-13-01"), None);
        assert_eq!(director_date("2026-01-01 12:00\"; delete"), None);
    }
}
