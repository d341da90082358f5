//! Each session's file and command tools work in `work/<session-id>/`, unless
//! `work_folder:` in `config/workspace.yaml` shares one folder: end to end with the binary.

mod common;

use common::Demo;
use std::path::Path;

fn append(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    let mut s = std::fs::read_to_string(&path).unwrap();
    s.push_str(text);
    std::fs::write(path, s).unwrap();
}

/// Agents `alpha` and `beta` write `note.txt` (their own name in it), `snoop` reads
/// it, tries `../a/note.txt` and lists its folder, `stamp` runs `pwd` as a command.
fn workspace() -> Demo {
    let demo = Demo::new();
    let root = &demo.root;
    for (name, tools) in [
        ("alpha", "[write_file]"),
        ("beta", "[write_file]"),
        ("snoop", "[read_file, list_files]"),
        ("stamp", "[stamp]"),
    ] {
        std::fs::write(
            root.join(format!("config/agents/{name}.yaml")),
            format!("name: {name}\nmodel: scripted\ntools: {tools}\n"),
        )
        .unwrap();
    }
    append(
        root,
        "config/tools.yaml",
        "  stamp:\n    command: [\"sh\", \"-c\", \"pwd > here.txt; pwd\"]\n",
    );
    let write = |who: &str| {
        format!(
            "  {who}:\n    turns:\n      - tool_calls: [{{tool: write_file, arguments: {{path: note.txt, content: {who}}}}}]\n      - text: wrote\n"
        )
    };
    append(
        root,
        "resources/scripts/demo.yaml",
        &format!(
            "{}{}  snoop:\n    turns:\n      - tool_calls:\n          - {{tool: read_file, arguments: {{path: note.txt}}}}\n          - {{tool: read_file, arguments: {{path: ../a/note.txt}}}}\n          - {{tool: list_files, arguments: {{}}}}\n      - text: looked\n  stamp:\n    turns:\n      - tool_calls: [{{tool: stamp, arguments: {{}}}}]\n      - text: stamped\n",
            write("alpha"),
            write("beta")
        ),
    );
    demo.run(&["validate"]).ok();
    demo
}

/// The request of `session` as `runtime requests show --json` prints it.
fn shown(demo: &Demo, session: &str) -> String {
    let list = demo
        .run(&[
            "runtime",
            "requests",
            "list",
            "--session",
            session,
            "--json",
        ])
        .ok()
        .json();
    let id = list["requests"][0]["id"].as_str().unwrap().to_string();
    demo.run(&["runtime", "requests", "show", &id, "--json"])
        .ok()
        .stdout
}

#[test]
fn sessions_do_not_see_each_other_s_files_and_cannot_climb_out() {
    let demo = workspace();
    let root = &demo.root;
    demo.run(&["run", "--agent", "alpha", "--session", "a", "go"])
        .ok();
    demo.run(&["run", "--agent", "beta", "--session", "b", "go"])
        .ok();
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).unwrap();
    assert_eq!(read("work/a/note.txt"), "alpha");
    assert_eq!(read("work/b/note.txt"), "beta");
    assert!(!root.join("work/note.txt").exists());

    // Session c sees neither note, and `..` out of its folder is refused.
    demo.run(&["run", "--agent", "snoop", "--session", "c", "look"])
        .ok();
    let shown = shown(&demo, "c");
    assert!(shown.contains("cannot read `note.txt`"), "{shown}");
    assert!(
        shown.contains("path `../a/note.txt` escapes the work folder"),
        "{shown}"
    );
    assert!(shown.contains("(no files)"), "{shown}");
    assert!(!shown.contains("alpha"), "{shown}");

    // A command tool starts in its session's folder.
    demo.run(&["run", "--agent", "stamp", "--session", "d", "go"])
        .ok();
    let here = read("work/d/here.txt");
    let expected = std::fs::canonicalize(root.join("work/d")).unwrap();
    assert_eq!(Path::new(here.trim()), expected);
}

#[test]
fn a_symlink_out_of_the_session_folder_is_refused() {
    let demo = workspace();
    let root = &demo.root;
    demo.run(&["run", "--agent", "alpha", "--session", "a", "go"])
        .ok();
    std::fs::create_dir_all(root.join("work/c")).unwrap();
    std::os::unix::fs::symlink(root.join("work/a/note.txt"), root.join("work/c/note.txt")).unwrap();
    demo.run(&["run", "--agent", "snoop", "--session", "c", "look"])
        .ok();
    let shown = shown(&demo, "c");
    assert!(
        shown.contains("path `note.txt` escapes the work folder"),
        "{shown}"
    );
    assert!(!shown.contains("alpha"), "{shown}");
}

#[test]
fn work_folder_workspace_shares_one_folder() {
    let demo = workspace();
    let root = &demo.root;
    let ws = std::fs::read_to_string(root.join("config/workspace.yaml")).unwrap();
    std::fs::write(
        root.join("config/workspace.yaml"),
        ws.replacen("work_folder: session\n", "work_folder: workspace\n", 1),
    )
    .unwrap();
    demo.run(&["run", "--agent", "alpha", "--session", "a", "go"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(root.join("work/note.txt")).unwrap(),
        "alpha"
    );
    demo.run(&["run", "--agent", "snoop", "--session", "c", "look"])
        .ok();
    let shown = shown(&demo, "c");
    assert!(shown.contains("alpha"), "session c reads a's note: {shown}");
}

#[test]
fn work_folder_agent_shares_per_agent() {
    let demo = workspace();
    let root = &demo.root;
    let ws = std::fs::read_to_string(root.join("config/workspace.yaml")).unwrap();
    std::fs::write(
        root.join("config/workspace.yaml"),
        ws.replacen("work_folder: session\n", "work_folder: agent\n", 1),
    )
    .unwrap();
    demo.run(&["run", "--agent", "alpha", "--session", "a", "go"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(root.join("work/agents/alpha/note.txt")).unwrap(),
        "alpha"
    );
}

#[test]
fn a_bad_work_folder_is_refused_with_its_place() {
    let demo = Demo::new();
    let root = &demo.root;
    let ws = std::fs::read_to_string(root.join("config/workspace.yaml")).unwrap();
    let line = ws
        .lines()
        .position(|l| l == "work_folder: session")
        .unwrap()
        + 1;
    std::fs::write(
        root.join("config/workspace.yaml"),
        ws.replacen("work_folder: session\n", "work_folder: everyone\n", 1),
    )
    .unwrap();
    let r = demo.run(&["validate"]).expect(2);
    assert!(
        r.stderr.contains(&format!("config/workspace.yaml:{line}:")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("everyone"), "{}", r.stderr);
    assert!(r.stderr.contains("session"), "{}", r.stderr);
}
