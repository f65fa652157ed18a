//! A pipeline stage's command line: built once, printed as the stage's "same as" line, and run by
//! parsing exactly that line with the CLI's own parser — so what a user copies is what ran.

use std::fmt;

use clap::Parser;

use crate::cli::{Cli, Command};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageCommand {
    argv: Vec<String>,
}

impl StageCommand {
    /// `exporter` followed by `words` (the subcommand).
    pub fn new(words: &[&str]) -> Self {
        Self { argv: std::iter::once("exporter").chain(words.iter().copied()).map(str::to_owned).collect() }
    }

    pub fn arg(mut self, flag: &str, value: impl fmt::Display) -> Self {
        self.argv.push(flag.to_owned());
        self.argv.push(value.to_string());
        self
    }

    /// `flag value` when there is a value.
    pub fn arg_if(self, flag: &str, value: Option<impl fmt::Display>) -> Self {
        match value {
            Some(value) => self.arg(flag, value),
            None => self,
        }
    }

    /// A boolean flag, when `on`.
    pub fn flag_if(mut self, flag: &str, on: bool) -> Self {
        if on {
            self.argv.push(flag.to_owned());
        }
        self
    }

    /// The command as the CLI parses it (every default and validation applied).
    pub fn parse(&self) -> anyhow::Result<Command> {
        Cli::try_parse_from(&self.argv)
            .map(|cli| cli.command)
            .map_err(|e| anyhow::anyhow!("the pipeline built `{self}`, which does not parse: {e}"))
    }
}

impl fmt::Display for StageCommand {
    /// A shell line: words with spaces or shell characters are single-quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<String> = self
            .argv
            .iter()
            .map(|word| {
                let plain =
                    !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./,=:+@%".contains(c));
                if plain { word.clone() } else { format!("'{}'", word.replace('\'', r"'\''")) }
            })
            .collect();
        f.write_str(&words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_that_need_it_are_quoted_and_the_line_parses() {
        let command = StageCommand::new(&["prune"])
            .arg("--teacher", "runs/my teacher/model")
            .arg("--keep", "6-2")
            .arg("--out", "it's")
            .flag_if("--force", true)
            .flag_if("--dry-run", false)
            .arg_if("--trim-vocab", None::<&str>);
        assert_eq!(
            command.to_string(),
            r"exporter prune --teacher 'runs/my teacher/model' --keep 6-2 --out 'it'\''s' --force"
        );
        let Command::Prune(args) = command.parse().unwrap() else { panic!("not prune") };
        assert_eq!(args.teacher.to_str(), Some("runs/my teacher/model"));
        assert!(args.force && args.trim_vocab.is_none());
        let err = StageCommand::new(&["prune"]).arg("--nope", 1).parse().unwrap_err().to_string();
        assert!(err.contains("exporter prune --nope 1") && err.contains("does not parse"), "{err}");
    }
}
