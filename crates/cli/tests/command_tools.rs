//! Command tools and the shell, through the real binary: a placeholder inside a
//! `sh -c` script is refused by `validate` at its file, line and column; the safe
//! form (the value as a positional parameter) runs a hostile value as plain text; a
//! command over `max_output_bytes` is killed and its request's tool outcome says so.

mod common;

use common::Demo;
use std::path::Path;

/// Appends `text` to the workspace file `rel`.
fn append(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    let mut all = std::fs::read_to_string(&path).unwrap();
    all.push_str(text);
    std::fs::write(path, all).unwrap();
}

const SCHEMA: &str = "    arguments:\n      type: object\n      properties: { text: { type: string } }\n      required: [text]\n";

#[test]
fn validate_refuses_a_placeholder_inside_a_shell_script() {
    let demo = Demo::new();
    let tool = format!("  save:\n    command: [\"sh\", \"-c\", \"echo {{text}} > out\"]\n{SCHEMA}");
    append(&demo.root, "config/tools.yaml", &tool);
    let tools = std::fs::read_to_string(demo.root.join("config/tools.yaml")).unwrap();
    let (line, text) = tools
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("echo {text}"))
        .unwrap();
    let column = text.find("{text}").unwrap() + 1;

    let r = demo.run(&["validate"]).expect(2);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let expected = format!(
        "error: config/tools.yaml:{}:{column}: `{{text}}` is inside the shell script of tool `save` (`sh -c`): \
         an argument like `x; rm -rf ~` would run as shell commands. Pass values as arguments after the \
         code instead: write \"$1\" in the code and append \"sh\", \"{{text}}\" to the command, \
         e.g. [\"sh\", \"-c\", \"echo \\\"$1\\\" > out\", \"sh\", \"{{text}}\"]. \
         Or set `allow_shell_placeholders: true` on the tool to accept that risk.",
        line + 1
    );
    assert_eq!(r.stderr.trim_end(), expected);
}

#[test]
fn the_safe_form_runs_a_hostile_value_as_text() {
    let demo = Demo::new();
    let root = &demo.root;
    let save = "  save:\n    command: [\"sh\", \"-c\", 'printf \"%s\" \"$1\" > saved.txt', \"sh\", \"{text}\"]\n";
    append(root, "config/tools.yaml", &format!("{save}{SCHEMA}"));
    std::fs::write(
        root.join("config/agents/scribe.yaml"),
        "name: scribe\nmodel: scripted\ntools: [save]\n",
    )
    .unwrap();
    let hostile = "hi; echo INJECTED > injected; $(touch pwned) `touch pwned2` && id > id.txt";
    append(
        root,
        "resources/scripts/demo.yaml",
        &format!(
            "  scribe:\n    turns:\n      - tool_calls: [{{tool: save, arguments: {{text: \"{hostile}\"}}}}]\n      - text: saved\n"
        ),
    );

    demo.run(&["validate"]).ok();
    let r = demo
        .run(&["run", "--agent", "scribe", "--session", "s1", "save this"])
        .ok();
    assert!(r.stdout.contains("saved"), "{}", r.stdout);
    assert_eq!(
        std::fs::read_to_string(root.join("work/s1/saved.txt")).unwrap(),
        hostile
    );
    for dir in [root.clone(), root.join("work"), root.join("work/s1")] {
        for name in ["injected", "pwned", "pwned2", "id.txt"] {
            assert!(!dir.join(name).exists(), "{} ran", dir.join(name).display());
        }
    }
}

#[test]
fn a_command_over_max_output_bytes_is_killed_and_the_request_says_so() {
    let demo = Demo::new();
    let root = &demo.root;
    // The workspace-wide limit (the template writes the default, 10 MiB).
    let workspace = std::fs::read_to_string(root.join("config/workspace.yaml")).unwrap();
    let default = "    max_output_bytes: 10485760\n";
    assert!(workspace.contains(default), "{workspace}");
    std::fs::write(
        root.join("config/workspace.yaml"),
        workspace.replace(default, "    max_output_bytes: 4096\n"),
    )
    .unwrap();
    append(
        root,
        "config/tools.yaml",
        "  spew:\n    command: [\"sh\", \"-c\", \"echo $$ > spew.pid; exec yes\"]\n    timeout: 60s\n",
    );
    std::fs::write(
        root.join("config/agents/scribe.yaml"),
        "name: scribe\nmodel: scripted\ntools: [spew]\n",
    )
    .unwrap();
    append(
        root,
        "resources/scripts/demo.yaml",
        "  scribe:\n    turns:\n      - tool_calls: [{tool: spew, arguments: {}}]\n      - text: it was too loud\n",
    );
    demo.run(&["validate"]).ok();

    let start = std::time::Instant::now();
    let r = demo
        .run(&["run", "--agent", "scribe", "--session", "s1", "go"])
        .ok();
    assert!(r.stdout.contains("it was too loud"), "{}", r.stdout);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );

    let list = demo
        .run(&["runtime", "requests", "list", "--json"])
        .ok()
        .json();
    let id = list["requests"][0]["id"].as_str().unwrap().to_string();
    let tree = demo
        .run(&["runtime", "requests", "show", &id, "--json"])
        .ok()
        .json();
    let call = tree["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["body"]["kind"] == "tool_call")
        .unwrap_or_else(|| panic!("no tool call in {tree:#}"));
    assert_eq!(call["body"]["call"]["tool"], "spew", "{call:#}");
    let outcome = &call["body"]["outcome"];
    assert_eq!(outcome["ok"], false, "{outcome:#}");
    let content = outcome["content"].as_str().unwrap();
    assert!(
        content
            .starts_with("`spew` wrote more than max_output_bytes (4096); killed\nstdout:\ny\ny\n"),
        "{content}"
    );
    // What was read up to the limit is kept, no more.
    let kept = content.split_once("stdout:\n").unwrap().1;
    assert_eq!(kept.len(), 4096, "{content}");

    // The command was killed, not left writing.
    let pid = std::fs::read_to_string(root.join("work/s1/spew.pid")).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
    assert!(
        stat.is_err() || stat.unwrap().contains(") Z "),
        "spew {pid} still runs"
    );
}
