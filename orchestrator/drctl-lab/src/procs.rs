//! Processes the lab runs in a zone and loses with it: etcd members and
//! highly available controllers (docs/guide/ha-etcd.md). A zone outage SIGKILLs them,
//! as a lost zone would; healing starts them again with the same data, so
//! an etcd member rejoins its cluster and a controller stands for election.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// What to run, where.
#[derive(Debug, Clone)]
pub struct ZoneProcess {
    /// 1, 2 or 3 (`lab-az1`...).
    pub zone: u8,
    /// For messages ("etcd member m1", "controller lab-az1-ctl").
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Its stderr, appended across restarts.
    pub log: PathBuf,
}

/// A [`ZoneProcess`] and its process when it runs; killed on drop.
pub struct RunningProcess {
    pub spec: ZoneProcess,
    child: Option<Child>,
}

impl RunningProcess {
    pub fn new(spec: ZoneProcess) -> RunningProcess {
        RunningProcess { spec, child: None }
    }

    pub fn start(&mut self) -> Result<(), String> {
        if self.running() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .map_err(|e| format!("{}: {e}", self.spec.log.display()))?;
        let child = Command::new(&self.spec.program)
            .args(&self.spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {} ({}): {e}", self.spec.name, self.spec.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the zone is gone, nothing shuts down cleanly.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RunningProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
