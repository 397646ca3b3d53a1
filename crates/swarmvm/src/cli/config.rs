//! `node run --config FILE`: every `node run` flag as a top-level key of a TOML file
//! (kebab-case, as on the command line: `data-dir = "..."`, `no-dht = true`, repeated flags as
//! arrays), then the environment (`SWARMVM_HTTP` for `--http`, `SWARMVM_DATA_DIR` for
//! `--data-dir`; repeated flags comma-separated), then the command line, each over the one
//! before. An annotated example: `docs/node.toml`.
//!
//! The file and the environment become command-line arguments before clap parses them, so
//! every value goes through the same parser and checks as a flag.

use std::collections::BTreeSet;
use std::ffi::OsString;

use anyhow::{Context as _, Result, bail};
use clap::{ArgAction, CommandFactory as _};

/// The largest config file read.
const MAX_CONFIG_LEN: u64 = 1 << 20;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `--flag` alone.
    Switch,
    /// `--flag VALUE`, once.
    One,
    /// `--flag VALUE`, repeatable.
    Many,
}

/// One `node run` flag: its long name, kind, and the environment variable clap reads for it
/// itself, if any.
struct Flag {
    long: String,
    kind: Kind,
    clap_env: Option<OsString>,
}

/// `node run`'s flags, and the global ones.
fn node_run_flags() -> Vec<Flag> {
    let mut root = super::Cli::command();
    root.build();
    let globals: Vec<clap::Arg> =
        root.get_arguments().filter(|a| a.is_global_set()).cloned().collect();
    let run = root
        .find_subcommand("node")
        .and_then(|n| n.find_subcommand("run"))
        .expect("node run exists");
    run.get_arguments()
        .chain(globals.iter())
        .filter_map(|arg| {
            let long = arg.get_long()?;
            if matches!(long, "help" | "version" | "config") {
                return None;
            }
            let kind = match arg.get_action() {
                ArgAction::SetTrue => Kind::Switch,
                ArgAction::Append => Kind::Many,
                _ => Kind::One,
            };
            Some(Flag {
                long: long.to_owned(),
                kind,
                clap_env: arg.get_env().map(ToOwned::to_owned),
            })
        })
        .collect()
}

/// `args` with a `node run --config FILE`'s file and the environment turned into flags; any
/// other command is returned as it is.
pub(crate) fn expand(mut args: Vec<OsString>) -> Result<Vec<OsString>> {
    let Some(run) = args.windows(2).position(|w| w[0] == "node" && w[1] == "run") else {
        return Ok(args);
    };
    let after = run + 2;
    let mut file = None;
    let mut i = after;
    while i < args.len() {
        let text = args[i].to_string_lossy();
        if text == "--config" {
            let path = args.get(i + 1).context("--config needs a file")?.clone();
            args.drain(i..i + 2);
            file = Some(path);
        } else if let Some(path) = text.strip_prefix("--config=") {
            file = Some(OsString::from(path));
            args.remove(i);
        } else {
            i += 1;
        }
    }
    let given: BTreeSet<String> = args[after..]
        .iter()
        .filter_map(|a| {
            a.to_str()?.strip_prefix("--").map(|f| f.split('=').next().unwrap_or(f).to_owned())
        })
        .collect();
    let mut table = match &file {
        Some(path) => read(path)?,
        None => toml::Table::new(),
    };
    let mut extra = Vec::new();
    for flag in node_run_flags() {
        let in_file = table.remove(&flag.long);
        if given.contains(&flag.long) {
            continue;
        }
        if let Some(var) = &flag.clap_env {
            // clap reads this one itself, below the command line; it also wins over the file.
            if std::env::var_os(var).is_some() {
                continue;
            }
        } else {
            let var = format!("SWARMVM_{}", flag.long.to_uppercase().replace('-', "_"));
            if let Some(value) = std::env::var_os(&var) {
                let value =
                    value.into_string().map_err(|_| anyhow::anyhow!("{var} is not UTF-8"))?;
                extra.extend(from_env(&flag, &var, &value)?);
                continue;
            }
        }
        if let Some(value) = in_file {
            extra.extend(from_file(&flag, value)?);
        }
    }
    if let Some(unknown) = table.keys().next() {
        let path = file.as_deref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        bail!(
            "{path}: unknown key '{}': not a `node run` flag (keys are the flags' long names, like data-dir)",
            swarmvm_primitives::text::shown(unknown)
        );
    }
    args.splice(after..after, extra);
    Ok(args)
}

fn read(path: &std::ffi::OsStr) -> Result<toml::Table> {
    let shown = path.to_string_lossy();
    let len = std::fs::metadata(path).with_context(|| format!("cannot read {shown}"))?.len();
    if len > MAX_CONFIG_LEN {
        bail!("{shown} is {len} bytes; a config file is at most {MAX_CONFIG_LEN}");
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {shown}"))?;
    text.parse::<toml::Table>()
        .map_err(|e| anyhow::anyhow!("{shown} is not TOML: {}", e.message().replace('\n', " ")))
}

fn arg(flag: &Flag, value: &str) -> OsString {
    OsString::from(format!("--{}={value}", flag.long))
}

fn from_env(flag: &Flag, var: &str, value: &str) -> Result<Vec<OsString>> {
    Ok(match flag.kind {
        Kind::Switch => match value {
            "1" | "true" | "yes" => vec![OsString::from(format!("--{}", flag.long))],
            "" | "0" | "false" | "no" => Vec::new(),
            _ => bail!(
                "{var} is {value:?}; it switches --{} on (true, 1) or off (false, 0)",
                flag.long
            ),
        },
        Kind::One => vec![arg(flag, value)],
        Kind::Many => value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| arg(flag, v))
            .collect(),
    })
}

fn from_file(flag: &Flag, value: toml::Value) -> Result<Vec<OsString>> {
    let key = &flag.long;
    let scalar = |v: &toml::Value| -> Result<String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            _ => bail!("'{key}' is a {}; it takes a string or a number", v.type_str()),
        }
    };
    Ok(match (flag.kind, value) {
        (Kind::Switch, toml::Value::Boolean(on)) => {
            if on {
                vec![OsString::from(format!("--{key}"))]
            } else {
                Vec::new()
            }
        }
        (Kind::Switch, v) => bail!("'{key}' is a {}; it is true or false", v.type_str()),
        (Kind::Many, toml::Value::Array(items)) => {
            items.iter().map(|v| scalar(v).map(|s| arg(flag, &s))).collect::<Result<_>>()?
        }
        (Kind::One, toml::Value::Array(_)) => bail!("'{key}' is given once, not as an array"),
        (_, v) => vec![arg(flag, &scalar(&v)?)],
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn expanded(args: &[&str]) -> Result<Vec<String>> {
        let args = expand(args.iter().map(OsString::from).collect())?;
        Ok(args.into_iter().map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn the_annotated_example_holds_only_flags_and_parses() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/node.toml");
        let args = expanded(&["swarmvm", "node", "run", "--config", example]).unwrap();
        assert!(args.contains(&"--data-dir=/var/lib/swarmvm".to_owned()), "{args:?}");
        assert!(args.contains(&"--follow=http://sequencer.example.edu:8080".to_owned()));
        assert!(!args.iter().any(|a| a.starts_with("--config")), "{args:?}");
        super::super::Cli::try_parse_from(&args).unwrap();
    }

    #[test]
    fn other_commands_are_left_as_they_are() {
        let args = ["swarmvm", "wallet", "new", "--config", "x"];
        assert_eq!(expanded(&args).unwrap(), args);
    }
}
