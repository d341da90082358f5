//! An MCP tool result as a tool output the model reads.

use base64::Engine as _;
use harness_providers::{NewArtifact, ToolOutput};
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};

/// Text blocks are joined by newlines. Binary blocks (images, audio, blob
/// resources) become artifacts of the request, and the text names each one
/// instead of carrying its base64 into the model's context; a text resource is
/// its text under its URI; a resource link is its JSON. Structured content is used
/// when there is no other block. A result flagged `isError` is a failed call.
pub(crate) fn to_output(tool: &str, result: CallToolResult) -> ToolOutput {
    let mut artifacts = Vec::new();
    let mut parts: Vec<String> = result
        .content
        .iter()
        .map(|b| block_text(tool, b, &mut artifacts))
        .collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    let content = parts.join("\n");
    let mut out = if result.is_error == Some(true) {
        ToolOutput::error(content)
    } else {
        ToolOutput::ok(content)
    };
    out.artifacts = artifacts;
    out
}

fn block_text(tool: &str, block: &ContentBlock, artifacts: &mut Vec<NewArtifact>) -> String {
    match block {
        ContentBlock::Text(t) => t.text.clone(),
        ContentBlock::Image(i) => binary(tool, "image", &i.mime_type, &i.data, artifacts),
        ContentBlock::Audio(a) => binary(tool, "audio", &a.mime_type, &a.data, artifacts),
        ContentBlock::Resource(r) => match &r.resource {
            ResourceContents::TextResourceContents { uri, text, .. } => {
                format!("[resource {uri}]\n{text}")
            }
            ResourceContents::BlobResourceContents {
                uri,
                mime_type,
                blob,
                ..
            } => {
                let mime = mime_type.as_deref().unwrap_or("application/octet-stream");
                format!(
                    "[resource {uri}] {}",
                    binary(tool, "resource", mime, blob, artifacts)
                )
            }
            _ => serde_json::to_string(block).unwrap_or_default(),
        },
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Decodes a base64 block into an artifact named `TOOL-KIND-N.EXT` and returns the
/// line that stands for it.
fn binary(
    tool: &str,
    kind: &str,
    mime: &str,
    data: &str,
    artifacts: &mut Vec<NewArtifact>,
) -> String {
    let bytes = match base64::engine::general_purpose::STANDARD.decode(data.trim()) {
        Ok(b) => b,
        Err(e) => {
            return format!(
                "[{kind} {mime}: not kept, its data is not base64 ({e}; {} characters)]",
                data.len()
            );
        }
    };
    let name = format!(
        "{}-{kind}-{}.{}",
        safe(tool),
        artifacts.len() + 1,
        extension(mime)
    );
    let line = format!("[{kind} {mime}, {} bytes: artifact {name}]", bytes.len());
    artifacts.push(NewArtifact {
        name,
        media_type: mime.to_string(),
        bytes,
    });
    line
}

/// A tool name as an artifact file name part (letters, digits, `-`, `_`).
fn safe(tool: &str) -> String {
    tool.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn extension(mime: &str) -> &'static str {
    match mime.split(';').next().unwrap_or("").trim() {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/svg+xml" => "svg",
        "audio/wav" | "audio/x-wav" => "wav",
        "audio/mpeg" => "mp3",
        "audio/ogg" => "ogg",
        "application/pdf" => "pdf",
        "application/json" => "json",
        "text/plain" => "txt",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_blocks_become_artifacts_and_text_names_them() {
        let png = [0x89u8, b'P', b'N', b'G', 1, 2, 3];
        let data = base64::engine::general_purpose::STANDARD.encode(png);
        let result = CallToolResult::success(vec![
            ContentBlock::text("here it is"),
            ContentBlock::image(data.clone(), "image/png"),
            ContentBlock::resource(ResourceContents::BlobResourceContents {
                uri: "file:///r.bin".into(),
                mime_type: None,
                blob: data,
                meta: None,
            }),
            ContentBlock::image("%%%", "image/png"),
        ]);
        let out = to_output("get-tiny.image", result);
        assert!(out.ok);
        assert_eq!(out.artifacts.len(), 2);
        assert_eq!(out.artifacts[0].name, "get-tiny_image-image-1.png");
        assert_eq!(out.artifacts[0].media_type, "image/png");
        assert_eq!(out.artifacts[0].bytes, png);
        assert_eq!(out.artifacts[1].name, "get-tiny_image-resource-2.bin");
        let lines: Vec<&str> = out.content.lines().collect();
        assert_eq!(lines[0], "here it is");
        assert_eq!(
            lines[1],
            "[image image/png, 7 bytes: artifact get-tiny_image-image-1.png]"
        );
        assert!(
            lines[2].starts_with(
                "[resource file:///r.bin] [resource application/octet-stream, 7 bytes"
            )
        );
        assert!(
            lines[3].contains("not kept, its data is not base64"),
            "{}",
            lines[3]
        );
        assert!(
            !out.content.contains("iVBOR"),
            "no base64 in the model's context"
        );
    }
}
