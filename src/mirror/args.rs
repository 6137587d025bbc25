//! The `sstream-mirror` command line, parsed the way Python's argparse parses it: options
//! anywhere, `--opt=value` or `--opt value`, unique prefixes of long options (`--no-item` for
//! `--no-item-download`), clustered short flags (`-vvU`), `--` ending options, negative numbers
//! as values. Pure: no I/O. A usage error is [`UsageError`] (exit 2, as argparse).

use std::fmt;
use std::path::PathBuf;

/// What the user typed, validated for shape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MirrorArgs {
    pub(crate) keep: bool,
    pub(crate) max: Option<i64>,
    pub(crate) path: Option<String>,
    pub(crate) no_item_download: bool,
    pub dry_run: bool,
    pub progress: bool,
    pub(crate) mirrors: Vec<String>,
    pub verbose: u8,
    pub log_file: Option<PathBuf>,
    pub(crate) keyring: Option<PathBuf>,
    pub(crate) no_verify: bool,
    pub(crate) no_checksumming_reader: bool,
    pub(crate) source_mirror: String,
    pub(crate) output_d: PathBuf,
    pub(crate) filters: Vec<String>,
    /// streamvault's own additions: the store root and parallel downloads.
    pub root: Option<PathBuf>,
    pub(crate) jobs: Option<usize>,
    /// `--speed-limit RATE` (`0`: off), `--speed-time SECONDS`, `--request-timeout SECONDS`.
    pub(crate) speed_limit: Option<u64>,
    pub(crate) speed_time: Option<u64>,
    pub(crate) request_timeout: Option<u64>,
    /// `--allow-downgrade`: accept metadata older than the last snapshot.
    pub(crate) allow_downgrade: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Run(Box<MirrorArgs>),
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub const USAGE: &str = "usage: sstream-mirror [-h] [--keep] [--max MAX] [--path PATH] \
[--no-item-download] [--dry-run] [--progress] [--mirror MIRRORS] [--verbose] [--log-file LOG_FILE] \
[--keyring KEYRING] [--no-verify] [--no-checksumming-reader] [--root DIR] [--jobs N] \
[--speed-limit RATE] [--speed-time SECONDS] [--request-timeout SECONDS] [--allow-downgrade] \
source_mirror output_d [filters ...]";

pub const HELP: &str = "
Mirror a SimpleStreams source into OUTPUT_D (streamvault: through the store at --root /
$STREAMVAULT_ROOT, as a snapshot published atomically to OUTPUT_D).

positional arguments:
  source_mirror          http(s)://, file:// or a directory; or the URL of the start document
  output_d               the directory to publish (a symlink to a tree in the store)
  filters                KEY=VALUE, KEY!=VALUE, KEY~REGEX, KEY!~REGEX (all must match)

options:
  -h, --help             show this help and exit
  --keep                 keep versions that left the source while within --max
  --max MAX              keep at most MAX versions per product
  --path PATH            start document relative to source_mirror
  --no-item-download     record metadata only (a later run fetches what is missing)
  --dry-run              print the plan, write nothing
  --progress             show download progress
  --mirror MIRRORS       fallback mirror tried after a 404 (repeatable)
  --verbose, -v          -v: to_add/to_remove per product; -vv: debug
  --log-file LOG_FILE    write log records to this file
  --keyring KEYRING      keyring (binary or armoured) for signed documents
  --no-verify, -U        do not check signatures (still unwrapped)
  --no-checksumming-reader
                         accept items without size or checksum
  --root DIR             streamvault store root (default $STREAMVAULT_ROOT or /var/lib/streamvault)
  --jobs N               parallel downloads (default 4)
  --speed-limit RATE     a request slower than RATE bytes/s (e.g. 1k; 0: off) for
                         --speed-time seconds is retried (default 1k)
  --speed-time SECONDS   window of --speed-limit (default 20)
  --request-timeout SECONDS
                         longest time one request may take (default: no limit)
  --allow-downgrade      accept metadata whose `updated` is older than the last run's
";

#[derive(Clone, Copy)]
enum Opt {
    Keep,
    Max,
    Path,
    NoItemDownload,
    DryRun,
    Progress,
    Mirror,
    Verbose,
    LogFile,
    Keyring,
    NoVerify,
    NoChecksummingReader,
    Root,
    Jobs,
    SpeedLimit,
    SpeedTime,
    RequestTimeout,
    AllowDowngrade,
    Help,
}

const LONG: &[(&str, Opt)] = &[
    ("--keep", Opt::Keep),
    ("--max", Opt::Max),
    ("--path", Opt::Path),
    ("--no-item-download", Opt::NoItemDownload),
    ("--dry-run", Opt::DryRun),
    ("--progress", Opt::Progress),
    ("--mirror", Opt::Mirror),
    ("--verbose", Opt::Verbose),
    ("--log-file", Opt::LogFile),
    ("--keyring", Opt::Keyring),
    ("--no-verify", Opt::NoVerify),
    ("--no-checksumming-reader", Opt::NoChecksummingReader),
    ("--root", Opt::Root),
    ("--jobs", Opt::Jobs),
    ("--speed-limit", Opt::SpeedLimit),
    ("--speed-time", Opt::SpeedTime),
    ("--request-timeout", Opt::RequestTimeout),
    ("--allow-downgrade", Opt::AllowDowngrade),
    ("--help", Opt::Help),
];

impl Opt {
    fn takes_value(self) -> bool {
        matches!(
            self,
            Opt::Max
                | Opt::Path
                | Opt::Mirror
                | Opt::LogFile
                | Opt::Keyring
                | Opt::Root
                | Opt::Jobs
                | Opt::SpeedLimit
                | Opt::SpeedTime
                | Opt::RequestTimeout
        )
    }
    fn name(self) -> &'static str {
        LONG.iter()
            .find(|(_, o)| std::mem::discriminant(o) == std::mem::discriminant(&self))
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// A long option by exact name or unique prefix (argparse's allow_abbrev).
fn long(name: &str) -> Result<Opt, UsageError> {
    if let Some((_, o)) = LONG.iter().find(|(n, _)| *n == name) {
        return Ok(*o);
    }
    let matches: Vec<&(&str, Opt)> = LONG.iter().filter(|(n, _)| n.starts_with(name)).collect();
    match matches.as_slice() {
        [(_, o)] => Ok(*o),
        [] => Err(UsageError(format!("unrecognized arguments: {name}"))),
        many => Err(UsageError(format!(
            "ambiguous option: {name} could match {}",
            many.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn looks_negative_number(s: &str) -> bool {
    s.strip_prefix('-')
        .is_some_and(|r| !r.is_empty() && r.parse::<f64>().is_ok())
}

/// Parse the arguments after the program name.
pub fn parse(argv: &[String]) -> Result<Parsed, UsageError> {
    let mut a = MirrorArgs::default();
    let mut positionals: Vec<String> = Vec::new();
    let mut i = 0;
    let mut only_positionals = false;
    while let Some(arg) = argv.get(i) {
        i += 1;
        if only_positionals || arg == "-" || !arg.starts_with('-') || looks_negative_number(arg) {
            positionals.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_positionals = true;
            continue;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let opt = long(&name)?;
            let value = if opt.takes_value() {
                match inline {
                    Some(v) => Some(v),
                    None => match argv.get(i) {
                        Some(v) if !v.starts_with('-') || looks_negative_number(v) => {
                            i += 1;
                            Some(v.clone())
                        }
                        _ => {
                            return Err(UsageError(format!(
                                "argument {}: expected one argument",
                                opt.name()
                            )));
                        }
                    },
                }
            } else {
                if inline.is_some() {
                    return Err(UsageError(format!(
                        "argument {}: ignored explicit argument '{}'",
                        opt.name(),
                        inline.unwrap_or_default()
                    )));
                }
                None
            };
            if apply(&mut a, opt, value)? {
                return Ok(Parsed::Help);
            }
            continue;
        }
        // Short flags, possibly clustered: -v, -vv, -U, -h.
        for c in arg.chars().skip(1) {
            let opt = match c {
                'v' => Opt::Verbose,
                'U' => Opt::NoVerify,
                'h' => Opt::Help,
                _ => return Err(UsageError(format!("unrecognized arguments: {arg}"))),
            };
            if apply(&mut a, opt, None)? {
                return Ok(Parsed::Help);
            }
        }
    }
    let mut pos = positionals.into_iter();
    match (pos.next(), pos.next()) {
        (Some(src), Some(out)) => {
            a.source_mirror = src;
            a.output_d = PathBuf::from(out);
            a.filters = pos.collect();
        }
        (Some(_), None) => {
            return Err(UsageError(
                "the following arguments are required: output_d".into(),
            ));
        }
        _ => {
            return Err(UsageError(
                "the following arguments are required: source_mirror, output_d".into(),
            ));
        }
    }
    Ok(Parsed::Run(Box::new(a)))
}

/// Apply one option; `true` means "help was asked for".
fn apply(a: &mut MirrorArgs, opt: Opt, value: Option<String>) -> Result<bool, UsageError> {
    let v = value.unwrap_or_default();
    match opt {
        Opt::Keep => a.keep = true,
        Opt::Max => {
            a.max = Some(
                v.parse::<i64>()
                    .map_err(|_| UsageError(format!("argument --max: invalid int value: '{v}'")))?,
            )
        }
        Opt::Path => a.path = Some(v),
        Opt::NoItemDownload => a.no_item_download = true,
        Opt::DryRun => a.dry_run = true,
        Opt::Progress => a.progress = true,
        Opt::Mirror => a.mirrors.push(v),
        Opt::Verbose => a.verbose = a.verbose.saturating_add(1),
        Opt::LogFile => a.log_file = Some(PathBuf::from(v)),
        Opt::Keyring => a.keyring = Some(PathBuf::from(v)),
        Opt::NoVerify => a.no_verify = true,
        Opt::NoChecksummingReader => a.no_checksumming_reader = true,
        Opt::Root => a.root = Some(PathBuf::from(v)),
        Opt::Jobs => {
            let n = v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=256).contains(n))
                .ok_or_else(|| {
                    UsageError(format!("argument --jobs: invalid value: '{v}' (1 to 256)"))
                })?;
            a.jobs = Some(n);
        }
        Opt::SpeedLimit => {
            let n = crate::fetch::parse_speed_limit(&v)
                .map_err(|_| UsageError(format!("argument --speed-limit: invalid rate: '{v}'")))?;
            a.speed_limit = Some(n);
        }
        Opt::SpeedTime => a.speed_time = Some(seconds("--speed-time", &v)?),
        Opt::RequestTimeout => a.request_timeout = Some(seconds("--request-timeout", &v)?),
        Opt::AllowDowngrade => a.allow_downgrade = true,
        Opt::Help => return Ok(true),
    }
    Ok(false)
}

fn seconds(opt: &str, v: &str) -> Result<u64, UsageError> {
    v.parse::<u64>()
        .map_err(|_| UsageError(format!("argument {opt}: invalid int value: '{v}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[&str]) -> Result<MirrorArgs, UsageError> {
        let v: Vec<String> = s.iter().map(|x| x.to_string()).collect();
        match parse(&v)? {
            Parsed::Run(a) => Ok(*a),
            Parsed::Help => Err(UsageError("help".into())),
        }
    }

    #[test]
    fn maas_docs_lines() {
        let a = p(&[
            "--keyring=/k.gpg",
            "http://h/ephemeral-v3/stable/",
            "/var/www/x",
            "arch=amd64",
            "release~(bionic|focal)",
            "--max=1",
            "--progress",
        ])
        .unwrap();
        assert_eq!(a.keyring, Some(PathBuf::from("/k.gpg")));
        assert_eq!(a.max, Some(1));
        assert!(a.progress);
        assert_eq!(a.filters, ["arch=amd64", "release~(bionic|focal)"]);
        assert_eq!(a.source_mirror, "http://h/ephemeral-v3/stable/");
        let a = p(&[
            "--keyring",
            "k",
            "s",
            "o",
            "os~(grub*|pxelinux)",
            "--max",
            "1",
        ])
        .unwrap();
        assert_eq!(a.max, Some(1));
        assert_eq!(a.filters, ["os~(grub*|pxelinux)"]);
    }

    #[test]
    fn abbreviations_clusters_and_separators() {
        let a = p(&[
            "--no-item",
            "-vvU",
            "--mir",
            "m1",
            "--mirror=m2",
            "s",
            "o",
            "--",
            "--x=y",
        ])
        .unwrap();
        assert!(a.no_item_download && a.no_verify);
        assert_eq!(a.verbose, 2);
        assert_eq!(a.mirrors, ["m1", "m2"]);
        assert_eq!(a.filters, ["--x=y"]);
        assert_eq!(p(&["--max", "-1", "s", "o"]).unwrap().max, Some(-1));
        let a = p(&[
            "--speed-limit=2k",
            "--speed-time",
            "5",
            "--request-timeout=60",
            "--allow-downgrade",
            "s",
            "o",
        ])
        .unwrap();
        assert_eq!(a.speed_limit, Some(2048));
        assert_eq!(a.speed_time, Some(5));
        assert_eq!(a.request_timeout, Some(60));
        assert!(a.allow_downgrade);
        assert_eq!(
            p(&["--speed-limit", "0", "s", "o"]).unwrap().speed_limit,
            Some(0)
        );
        assert!(p(&["--speed-limit", "x", "s", "o"]).is_err());
    }

    #[test]
    fn usage_errors() {
        for bad in [
            vec!["s"],
            vec![],
            vec!["--k", "s", "o"],
            vec!["--max", "x", "s", "o"],
            vec!["--max"],
            vec!["--bogus", "s", "o"],
            vec!["-x", "s", "o"],
            vec!["--keep=1", "s", "o"],
            vec!["--jobs", "0", "s", "o"],
        ] {
            assert!(p(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(&["-h".to_string()]), Ok(Parsed::Help));
    }
}
