//! Finds the elements of a command's argv that an interpreter runs as code:
//! the script of `sh -c SCRIPT` (also `bash`, `dash`, `zsh`, `ksh`, combined flags
//! like `-ec`, `/bin/sh`, behind `env`/`nohup`/`nice`/`timeout`), and the inline
//! code of `python -c`, `node -e`/`-p`, `perl -e`/`-E` and `ruby -e`. A `{placeholder}`
//! substituted there turns an argument into code, so `validate` refuses it.

use std::path::Path;

/// The interpreter family running the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interpreter {
    Shell,
    Python,
    Node,
    Perl,
    Ruby,
}

/// Inline code in an argv.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InlineCode {
    pub interpreter: Interpreter,
    /// How the command runs it, for messages: `sh -c`, `python3 -c`, `perl -ne`.
    pub shown: String,
    /// Indices of the argv elements holding code.
    pub code: Vec<usize>,
}

/// The inline code run by `argv`, if any.
pub(crate) fn inline_code(argv: &[String]) -> Option<InlineCode> {
    let at = program_index(argv)?;
    let name = base_name(&argv[at]);
    let interpreter = interpreter(name)?;
    let args = &argv[at + 1..];
    let (flag, code) = match interpreter {
        Interpreter::Shell => shell_script(args)?,
        Interpreter::Python => code_options(args, &PYTHON)?,
        Interpreter::Node => code_options(args, &NODE)?,
        Interpreter::Perl => code_options(args, &PERL)?,
        Interpreter::Ruby => code_options(args, &RUBY)?,
    };
    Some(InlineCode {
        interpreter,
        shown: format!("{name} {flag}"),
        code: code.into_iter().map(|i| at + 1 + i).collect(),
    })
}

/// The index of the program actually run, past `env`, `nohup`, `nice` and `timeout`.
fn program_index(argv: &[String]) -> Option<usize> {
    let mut at = 0;
    loop {
        let arg = argv.get(at)?;
        let skip = match base_name(arg) {
            "env" => env_args(&argv[at + 1..]),
            "nohup" => 0,
            "nice" => options_with_values(&argv[at + 1..], &["-n", "--adjustment"]),
            "timeout" => {
                let opts = options_with_values(&argv[at + 1..], &["-s", "--signal", "-k"]);
                opts + 1 // the duration
            }
            _ => return Some(at),
        };
        at += 1 + skip;
    }
}

/// How many arguments of `env` come before its program: options and `NAME=value`.
fn env_args(args: &[String]) -> usize {
    let mut n = options_with_values(args, &["-u", "--unset", "-C", "--chdir"]);
    while args
        .get(n)
        .is_some_and(|a| !a.starts_with('-') && a.contains('='))
    {
        n += 1;
    }
    n
}

/// How many leading arguments are options (`--` included), where those in
/// `valued` take the next argument as their value.
fn options_with_values(args: &[String], valued: &[&str]) -> usize {
    let mut n = 0;
    while let Some(arg) = args.get(n) {
        if arg == "--" {
            return n + 1;
        }
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        n += if valued.contains(&arg.as_str()) { 2 } else { 1 };
    }
    n
}

fn base_name(program: &str) -> &str {
    Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program)
}

fn interpreter(name: &str) -> Option<Interpreter> {
    let version = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    match name {
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" => Some(Interpreter::Shell),
        "node" | "nodejs" => Some(Interpreter::Node),
        "ruby" => Some(Interpreter::Ruby),
        _ if version("python") || version("pypy") => Some(Interpreter::Python),
        _ if version("perl") => Some(Interpreter::Perl),
        _ => None,
    }
}

/// `sh [options] -c [options] SCRIPT [NAME [ARGS…]]`: the option cluster that
/// holds `c` (`-c`, `-ec`), and SCRIPT, the first operand after the options.
fn shell_script(args: &[String]) -> Option<(String, Vec<usize>)> {
    let mut flag = None;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg == "--" || arg == "-" {
            i += 1;
            break;
        }
        let is_option = (arg.starts_with('-') || arg.starts_with('+')) && arg.len() > 1;
        if !is_option {
            break;
        }
        if !arg.starts_with("--") {
            if arg.starts_with('-') && arg.contains('c') {
                flag = Some(arg.clone());
            }
            if arg.contains('o') {
                i += 1; // `-o pipefail`
            }
        }
        i += 1;
    }
    let flag = flag?;
    (i < args.len()).then(|| (flag, vec![i]))
}

/// The options of an interpreter that takes inline code.
struct Flags {
    /// Option letters whose value is code (`-c CODE`, `-e CODE`).
    code: &'static [char],
    /// Long options whose value is code (`--eval CODE`, `--eval=CODE`).
    long: &'static [&'static str],
    /// Whether code may follow its letter in the same argument (`-cCODE`).
    attached: bool,
    /// Other option letters that take a value (`-W ignore`).
    valued: &'static [char],
    /// Option letters that run something else instead (`python -m`).
    stop: &'static [char],
}

const PYTHON: Flags = Flags {
    code: &['c'],
    long: &[],
    attached: true,
    valued: &['W', 'X'],
    stop: &['m'],
};
const NODE: Flags = Flags {
    code: &['e', 'p'],
    long: &["eval", "print"],
    attached: false,
    valued: &['r'],
    stop: &[],
};
const PERL: Flags = Flags {
    code: &['e', 'E'],
    long: &[],
    attached: true,
    valued: &[],
    stop: &[],
};
const RUBY: Flags = Flags {
    code: &['e'],
    long: &[],
    attached: true,
    valued: &[],
    stop: &[],
};

/// Reads options until the first operand (a script file, which ends them) and
/// returns the first code option as written and every code element
/// (`perl -e A -e B` has two).
fn code_options(args: &[String], flags: &Flags) -> Option<(String, Vec<usize>)> {
    let mut shown = None;
    let mut code = Vec::new();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg == "--" || arg == "-" || !arg.starts_with('-') {
            break;
        }
        let (flag, at) = match arg.strip_prefix("--") {
            Some(long) => match long.split_once('=') {
                Some((name, _)) if flags.long.contains(&name) => (Some(format!("--{name}")), i),
                None if flags.long.contains(&long) => (Some(arg.clone()), i + 1),
                _ => (None, i),
            },
            None => short_option(arg, flags, i)?,
        };
        if let Some(flag) = flag {
            shown.get_or_insert(flag);
            code.push(at);
        }
        i = at.max(i) + 1;
    }
    let shown = shown?;
    code.iter()
        .all(|&at| at < args.len())
        .then_some((shown, code))
}

/// One `-xyz` cluster at `i`: the code flag it holds (as written) and where its
/// value is; the last index it uses otherwise. `None`: the program runs something
/// else (`python -m`).
fn short_option(arg: &str, flags: &Flags, i: usize) -> Option<(Option<String>, usize)> {
    let cluster = &arg[1..];
    for (at, c) in cluster.char_indices() {
        let end = 1 + at + c.len_utf8();
        let rest_empty = end == arg.len();
        if flags.stop.contains(&c) {
            return None;
        }
        if flags.code.contains(&c) {
            let flag = if flags.attached { &arg[..end] } else { arg };
            let value_at = if flags.attached && !rest_empty {
                i
            } else {
                i + 1
            };
            return Some((Some(flag.to_string()), value_at));
        }
        if flags.valued.contains(&c) {
            return Some((None, if rest_empty { i + 1 } else { i }));
        }
    }
    Some((None, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(argv: &[&str]) -> Option<(Interpreter, String, Vec<usize>)> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        inline_code(&argv).map(|c| (c.interpreter, c.shown, c.code))
    }

    fn shell(shown: &str, at: usize) -> Option<(Interpreter, String, Vec<usize>)> {
        Some((Interpreter::Shell, shown.to_string(), vec![at]))
    }

    #[test]
    fn finds_shell_scripts() {
        assert_eq!(code(&["sh", "-c", "echo {x}"]), shell("sh -c", 2));
        assert_eq!(
            code(&["/bin/bash", "-ec", "x", "sh", "{x}"]),
            shell("bash -ec", 2)
        );
        assert_eq!(code(&["dash", "-e", "-c", "x"]), shell("dash -c", 3));
        assert_eq!(
            code(&["zsh", "-o", "pipefail", "-c", "x"]),
            shell("zsh -c", 4)
        );
        assert_eq!(code(&["ksh", "-c", "-e", "x"]), shell("ksh -c", 3));
        assert_eq!(code(&["bash", "--norc", "-c", "x"]), shell("bash -c", 3));
        assert_eq!(
            code(&["env", "-i", "A=1", "sh", "-c", "x"]),
            shell("sh -c", 5)
        );
        assert_eq!(
            code(&["/usr/bin/env", "-u", "HOME", "--", "sh", "-c", "x"]),
            shell("sh -c", 6)
        );
        assert_eq!(
            code(&[
                "nohup", "nice", "-n", "5", "timeout", "-s", "KILL", "10", "sh", "-c", "x"
            ]),
            shell("sh -c", 10)
        );
    }

    #[test]
    fn a_shell_running_a_file_has_no_inline_code() {
        assert_eq!(code(&["sh", "resources/tools/x.sh", "{x}"]), None);
        assert_eq!(code(&["bash", "-e", "x.sh", "-c"]), None);
        assert_eq!(code(&["sh", "-c"]), None);
        assert_eq!(code(&["shellcheck", "-c", "{x}"]), None);
        assert_eq!(code(&["grep", "-c", "{x}"]), None);
    }

    #[test]
    fn finds_other_interpreters_inline_code() {
        let at =
            |i: Interpreter, shown: &str, at: &[usize]| Some((i, shown.to_string(), at.to_vec()));
        use Interpreter::*;
        assert_eq!(
            code(&["python3", "-c", "x"]),
            at(Python, "python3 -c", &[2])
        );
        assert_eq!(
            code(&["python3.12", "-Ic", "x"]),
            at(Python, "python3.12 -Ic", &[2])
        );
        assert_eq!(
            code(&["python", "-W", "ignore", "-c", "x"]),
            at(Python, "python -c", &[4])
        );
        assert_eq!(
            code(&["python3", "-cprint(1)"]),
            at(Python, "python3 -c", &[1])
        );
        assert_eq!(code(&["python3", "-m", "http.server", "-c"]), None);
        assert_eq!(code(&["python3", "script.py", "-c", "x"]), None);
        assert_eq!(code(&["node", "-e", "x"]), at(Node, "node -e", &[2]));
        assert_eq!(code(&["node", "--eval=x"]), at(Node, "node --eval", &[1]));
        assert_eq!(code(&["node", "-pe", "x"]), at(Node, "node -pe", &[2]));
        assert_eq!(
            code(&["nodejs", "--print", "x"]),
            at(Node, "nodejs --print", &[2])
        );
        assert_eq!(
            code(&["node", "-r", "esm", "-p", "x"]),
            at(Node, "node -p", &[4])
        );
        assert_eq!(code(&["perl", "-ne", "x", "f"]), at(Perl, "perl -ne", &[2]));
        assert_eq!(
            code(&["perl", "-e", "a", "-E", "b"]),
            at(Perl, "perl -e", &[2, 4])
        );
        assert_eq!(code(&["ruby", "-e", "x"]), at(Ruby, "ruby -e", &[2]));
        assert_eq!(code(&["perl", "x.pl", "-e"]), None);
    }
}
