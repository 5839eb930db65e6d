//! Actions that run something here: `exec` and `wait`.

use super::*;

impl RealActions {
    /// `exec`: a program without a shell, told which step it is so it can make its effect happen once.
    pub(super) async fn exec(
        &self,
        execution: &str,
        attempt: u32,
        step: &StepSpec,
        command: Vec<String>,
        env: Vec<(String, String)>,
        cwd: Option<String>,
    ) -> Result<Note, ActionError> {
        let (prog, args) =
            command.split_first().ok_or_else(|| ActionError::Fatal("`command` must be a non-empty list".into()))?;
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args).kill_on_drop(true);
        // What the program needs to make its own effect happen once.
        cmd.env("DRCTL_EXECUTION", execution).env("DRCTL_STEP", &step.id).env("DRCTL_ATTEMPT", attempt.to_string());
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        cmd.envs(env);
        let out = cmd.output().await.map_err(|e| ActionError::Fatal(format!("cannot run {prog}: {e}")))?;
        if out.status.success() {
            Ok(Some(format!("{prog} exited 0")))
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: String =
                err.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
            Err(ActionError::Fatal(format!("{prog} exited {}: {tail}", out.status.code().unwrap_or(-1))))
        }
    }
}
