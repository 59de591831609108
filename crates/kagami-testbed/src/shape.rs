//! Link shaping with `tc`: a rate (token bucket, `tbf`) on each direction
//! of a host's link, and where the kernel has `sch_netem`, delay and loss.

use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::Error;
use crate::process::run;

/// How one host's link is shaped, each direction alike.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Shape {
    /// Megabits per second; `None` leaves the rate alone.
    pub rate_mbit: Option<u32>,
    /// Added one-way delay (needs netem).
    pub delay: Option<Duration>,
    /// Packets lost, in percent (needs netem).
    pub loss_percent: Option<f32>,
}

impl Shape {
    /// A rate limit alone.
    pub fn rate(mbit: u32) -> Shape {
        Shape {
            rate_mbit: Some(mbit),
            ..Shape::default()
        }
    }

    /// Puts this shape on `device` in namespace `ns`, replacing what was
    /// there; a shape of nothing removes it.
    pub fn apply(&self, ns: &str, device: &str) -> Result<(), Error> {
        let tc = |args: &[&str]| run(Command::new("tc").args(["-n", ns]).args(args));
        let _ = tc(&["qdisc", "del", "dev", device, "root"]);
        let netem = self.delay.is_some() || self.loss_percent.is_some();
        let mut parent = "root".to_owned();
        if netem {
            let mut args: Vec<String> = [
                "qdisc", "add", "dev", device, "root", "handle", "1:", "netem",
            ]
            .map(String::from)
            .to_vec();
            if let Some(delay) = self.delay {
                args.extend(["delay".to_owned(), format!("{}ms", delay.as_millis())]);
            }
            if let Some(loss) = self.loss_percent {
                args.extend(["loss".to_owned(), format!("{loss}%")]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            tc(&args).map_err(|e| match e {
                Error::Command { output, .. } if output.contains("qdisc kind is unknown") => {
                    Error::Check(
                        "delay and loss need the kernel's netem qdisc (sch_netem), which this machine lacks; shape the rate alone".to_owned(),
                    )
                }
                other => other,
            })?;
            parent = "parent 1:".to_owned();
        }
        if let Some(mbit) = self.rate_mbit {
            // A burst of ~20 ms at the rate, at least 64 KiB: tbf needs at
            // least one timer tick's worth to reach its rate.
            let burst = (u64::from(mbit) * 1_000_000 / 8 / 50).max(64 * 1024);
            let mut args: Vec<String> = ["qdisc", "add", "dev", device].map(String::from).to_vec();
            args.extend(parent.split(' ').map(String::from));
            args.extend([
                "tbf".to_owned(),
                "rate".to_owned(),
                format!("{mbit}mbit"),
                "burst".to_owned(),
                burst.to_string(),
                "latency".to_owned(),
                "100ms".to_owned(),
            ]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            tc(&args)?;
        }
        Ok(())
    }
}
