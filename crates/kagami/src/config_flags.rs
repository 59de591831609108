//! `--config FILE`: a YAML file with one key per long flag of `kagami
//! server` / `kagami agent` (`embedded-registry: true`,
//! `https-listen-port: 6443`, …), as K3s's `config.yaml`. The file's
//! values become flags placed before the command line's, for every flag
//! the command line and the environment leave unset: a flag given either
//! way wins over the file. K3s's own keys that kagami has no use for are
//! ignored (listed at debug level), so an unmodified
//! `/etc/rancher/k3s/config.yaml` works; any other key is an error naming
//! the file, line and key.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};
use kagami_config::config_file::{self, ConfigFile, KnownKey, Value};

use crate::cli::Cli;

/// Checks the file's values for one flag with the flag's own parser (each
/// value alone, on the command `name`), so a wrong one is reported with the
/// file, line and key it came from.
fn check_values(
    file: &ConfigFile,
    entry: &config_file::Entry,
    name: &str,
    long: &str,
) -> anyhow::Result<()> {
    let values: Vec<&str> = match &entry.value {
        Value::Bool(_) => return Ok(()),
        Value::Scalar(value) => vec![value.as_str()],
        Value::List(values) => values.iter().map(String::as_str).collect(),
    };
    for value in values {
        let alone = ["kagami", name, &format!("--{long}"), value];
        if let Err(error) = Cli::command().try_get_matches_from(alone) {
            let rendered = error.to_string();
            let reason = rendered
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            anyhow::bail!(
                "{}:{}: key {:?}: {reason}",
                file.path.display(),
                entry.line,
                entry.key
            );
        }
    }
    Ok(())
}

/// Where `--config` is looked for when not given.
pub const DEFAULT_CONFIG: &str = "/etc/kagami/config.yaml";

/// The commands that read a config file.
const CONFIGURED: [&str; 2] = ["server", "agent"];

/// Parses the command line, merged with the config file for the commands
/// that read one. Returns the file read, if any, for the log.
pub fn parse(args: Vec<OsString>) -> anyhow::Result<(Cli, Option<ConfigFile>)> {
    let matches = Cli::command()
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| e.exit());
    let Some((name, sub)) = matches.subcommand() else {
        return Ok((
            Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()),
            None,
        ));
    };
    if !CONFIGURED.contains(&name) {
        return Ok((
            Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()),
            None,
        ));
    }
    let command = Cli::command();
    let Some(subcommand) = command.find_subcommand(name) else {
        return Ok((
            Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()),
            None,
        ));
    };
    let named = sub.get_one::<PathBuf>("config").cloned();
    let path = named
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let mut known = Vec::new();
    let mut ids = Vec::new();
    for arg in subcommand.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if long == "config" || long == "help" {
            continue;
        }
        let known_key = match arg.get_action() {
            ArgAction::SetTrue => KnownKey::bool(long),
            ArgAction::Append => KnownKey::list(long),
            _ => KnownKey::scalar(long),
        };
        known.push(known_key);
        ids.push((long, id));
    }
    let file = match &named {
        Some(path) => Some(config_file::load(path, &known)?),
        None => config_file::load_optional(&path, &known)?,
    };
    let Some(file) = file else {
        return Ok((
            Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()),
            None,
        ));
    };
    let mut injected: Vec<OsString> = Vec::new();
    for entry in &file.entries {
        let Some((long, id)) = ids.iter().find(|(long, _)| *long == entry.key) else {
            continue;
        };
        // A wrong value is a mistake in the file even where a flag wins.
        check_values(&file, entry, name, long)?;
        let given = matches!(
            sub.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if given {
            continue;
        }
        let flag = format!("--{long}");
        match &entry.value {
            Value::Bool(true) => injected.push(flag.into()),
            Value::Bool(false) => {}
            Value::Scalar(value) => injected.extend([flag.into(), value.into()]),
            Value::List(values) => {
                for value in values {
                    injected.extend([OsString::from(&flag), value.into()]);
                }
            }
        }
    }
    // The file's flags go right after the command's name, before the
    // command line's own.
    let at = args
        .iter()
        .position(|arg| arg.to_str() == Some(name))
        .context("the command's name is not among the arguments")?;
    let mut merged = args[..=at].to_vec();
    merged.extend(injected);
    merged.extend_from_slice(&args[at + 1..]);
    let cli = Cli::try_parse_from_args(merged).map_err(|e| {
        anyhow::anyhow!(
            "{}: a value does not fit its flag: {}",
            file.path.display(),
            e.render()
        )
    })?;
    Ok((cli, Some(file)))
}
