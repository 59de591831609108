//! Programs the bed starts: run in a host's network namespace, their
//! output in a log file, killed when dropped; and one-shot commands whose
//! failure is an [`Error`] with their output.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// A command line as text, for errors.
fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `command` to completion; its stdout, or an error with its output.
pub fn run(command: &mut Command) -> Result<String, Error> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Command {
            command: describe(command),
            status: "not started".to_owned(),
            output: source.to_string(),
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: describe(command),
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `ip netns exec NS PROGRAM`, as a command to add arguments to.
pub fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]).arg(program);
    command
}

/// A long-running program, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    log: PathBuf,
    name: String,
}

impl Proc {
    /// Starts `command` with its output appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Proc, Error> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(Error::io(log))
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(open()?)
            .stderr(open()?)
            .spawn()
            .map_err(|source| Error::Command {
                command: describe(&command),
                status: "not started".to_owned(),
                output: source.to_string(),
            })?;
        Ok(Proc {
            child: Some(child),
            log: log.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log has a line containing `text`; fails if it exits
    /// first or `within` passes.
    pub fn wait_for_log(&mut self, text: &str, within: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + within;
        loop {
            if self.log().contains(text) {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::Check(format!(
                    "{} exited ({status}) before logging {text:?}:\n{}",
                    self.name,
                    self.log()
                )));
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("{} to log {text:?}", self.name),
                    detail: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
