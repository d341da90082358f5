//! An MCP tool result as a tool output the model reads.

use harness_providers::ToolOutput;
use rmcp::model::{CallToolResult, ContentBlock};

/// Text blocks are joined by newlines; other blocks (images, audio, resources)
/// are shown as their JSON; structured content is used when there is no text. A
/// result flagged `isError` is a failed call.
pub(crate) fn to_output(result: CallToolResult) -> ToolOutput {
    let mut parts: Vec<String> = result.content.iter().map(block_text).collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    let content = parts.join("\n");
    if result.is_error == Some(true) {
        ToolOutput::error(content)
    } else {
        ToolOutput::ok(content)
    }
}

fn block_text(block: &ContentBlock) -> String {
    match block.as_text() {
        Some(t) => t.text.clone(),
        None => serde_json::to_string(block).unwrap_or_default(),
    }
}
