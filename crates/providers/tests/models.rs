//! `build_model`: scripted models load their script; HTTP providers need their key.

use harness_config::{ModelsFile, Workspace, WorkspaceFile, from_yaml};
use harness_providers::{ModelError, RateLimits, ScriptedModel, build_model};
use std::path::Path;

fn workspace(root: &Path) -> Workspace {
    let models: ModelsFile = from_yaml(
        "models:\n  demo: {provider: scripted, script: resources/scripts/demo.yaml}\n  \
         gpt: {provider: openai, model: gpt-4o, api_key_env: HARNESS_TEST_UNSET_KEY}\n  \
         claude: {provider: anthropic, model: claude}\n  \
         lost: {provider: scripted, script: resources/scripts/missing.yaml}\n",
        Path::new("models.yaml"),
    )
    .unwrap();
    let settings: WorkspaceFile = from_yaml("name: test", Path::new("workspace.yaml")).unwrap();
    Workspace {
        root: root.to_path_buf(),
        settings,
        models: models.models,
        agents: Default::default(),
        tools: Default::default(),
        mcp: Default::default(),
        stores: Default::default(),
        skills: Default::default(),
    }
}

fn config_error(result: Result<impl Sized, ModelError>) -> String {
    match result {
        Err(ModelError::Config(message)) => message,
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("expected a config error"),
    }
}

#[test]
fn builds_scripted_and_http_models() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("resources/scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(
        scripts.join("demo.yaml"),
        "agents:\n  a:\n    turns: [{text: hi}]\n",
    )
    .unwrap();
    let ws = workspace(dir.path());

    assert!(build_model(&ws, "demo", &RateLimits::new()).is_ok());
    // The test process does not have the key `gpt` names.
    assert!(std::env::var_os("HARNESS_TEST_UNSET_KEY").is_none());
    assert_eq!(
        config_error(build_model(&ws, "gpt", &RateLimits::new())),
        "model `gpt`: the environment variable HARNESS_TEST_UNSET_KEY (its `api_key_env`) is not \
         set; export it in the environment of the process that runs the agents"
    );
    assert!(
        build_model(&ws, "claude", &RateLimits::new()).is_ok(),
        "no key asked for, none needed"
    );
    assert!(
        config_error(build_model(&ws, "lost", &RateLimits::new()))
            .contains("resources/scripts/missing.yaml")
    );
    assert!(config_error(build_model(&ws, "nope", &RateLimits::new())).contains("`nope`"));
}

#[test]
fn a_script_error_names_the_file_line_and_column() {
    let yaml = "agents:\n  a:\n    turns:\n      - txt: hi\n";
    assert_eq!(
        config_error(ScriptedModel::from_yaml_str(
            yaml,
            "resources/scripts/demo.yaml"
        )),
        "script resources/scripts/demo.yaml:4:9: agents.a.turns[0]: unknown field `txt`, \
         expected one of `text`, `tool_calls`, `latency_ms`, `repeat` (did you mean `text`?)"
    );
}
