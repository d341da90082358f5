//! Skills: an agent that lists one is told its description after its system
//! prompt and offered `load_skill`, which returns the whole `SKILL.md`; a skill the
//! agent does not list is refused (the model is told, nothing is read).

use harness_core::*;
use harness_engine::{Harness, WorkerOptions, run_until_settled};
use harness_fake_provider::{FakeProvider, openai};
use std::time::Duration;

#[tokio::test]
async fn an_agent_is_told_its_skills_and_loads_one() {
    let server = FakeProvider::spawn();
    server.push(
        openai::Turn::new("m")
            .call(
                0,
                "call_a",
                "load_skill",
                &["{\"name\": \"release-notes\"}"],
            )
            .call(1, "call_b", "load_skill", &["{\"name\": \"secret-plans\"}"])
            .finish("tool_calls")
            .reply(),
    );
    server.push(openai::Turn::new("m").text("ok").finish("stop").reply());
    let dir = tempfile::tempdir().unwrap();
    harness_config::init(dir.path(), false).unwrap();
    let models = dir.path().join("config/models.yaml");
    let text = std::fs::read_to_string(&models).unwrap().replace(
        "models:\n",
        &format!(
            "models:\n  local:\n    provider: openai\n    model: m\n    base_url: {}\n",
            server.openai_base_url()
        ),
    );
    std::fs::write(models, text).unwrap();
    let other = dir.path().join("resources/skills/secret-plans");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("SKILL.md"),
        "---\nname: secret-plans\ndescription: Not for helpers.\n---\nhidden\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config/agents/helper.yaml"),
        "name: helper\nmodel: local\nsystem_prompt: Be brief.\ntools: [list_files]\nskills: [release-notes]\n",
    )
    .unwrap();
    let h = Harness::open(dir.path()).unwrap();
    let req = h.request(None, "helper", "notes please").await.unwrap();
    let opts = WorkerOptions {
        poll: Duration::from_millis(20),
        ..Default::default()
    };
    let r = run_until_settled(&h, &req.id, opts).await.unwrap();
    assert_eq!(r.status, RequestStatus::Completed, "{r:?}");

    let sent = server.received()[0].json();
    assert_eq!(
        sent["messages"][0]["content"],
        "Be brief.\n\nSkills you have (before following one, load its full instructions with the \
         `load_skill` tool):\n- release-notes: Collect release notes and summarise them for operators."
    );
    let tools: Vec<&str> = sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["list_files", "load_skill"]);

    let steps = h.store().steps(&req.id).await.unwrap();
    let outcome = |i: usize| match &steps[i].body {
        StepBody::ToolCall {
            outcome: Some(o), ..
        } => o.clone(),
        other => panic!("{other:?}"),
    };
    let loaded = outcome(1);
    assert!(loaded.ok, "{loaded:?}");
    assert_eq!(
        loaded.content,
        std::fs::read_to_string(dir.path().join("resources/skills/release-notes/SKILL.md"))
            .unwrap()
    );
    let refused = outcome(2);
    assert!(!refused.ok);
    assert_eq!(
        refused.content,
        "`secret-plans` is not a skill of agent `helper` (its skills: release-notes)"
    );
}
