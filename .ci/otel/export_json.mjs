// The OpenTelemetry JS SDK's OTLP/HTTP exporter (OTLP JSON: hex ids, lowerCamelCase) sending a
// GenAI conversation to agentrail under /otlp/v1/traces, then the same spans again (a retry).
// Writes what it sent to OUT for interop.py's check.
//     node export_json.mjs URL KEY OUT
import { writeFileSync } from "node:fs";
import { context, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";

const [url, key, out] = process.argv.slice(2);
const exporter = new OTLPTraceExporter({
  url: `${url}/otlp/v1/traces`,
  headers: { Authorization: `Bearer ${key}` },
});
const memory = new InMemorySpanExporter();
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ "service.name": "interop-js-agent" }),
  spanProcessors: [new SimpleSpanProcessor(memory)],
});
const tracer = provider.getTracer("agentrail.interop.js");
const conv = "conv-interop-json";
const email = "otel.interop@example.com";

const agent = tracer.startSpan("invoke_agent billing", {
  attributes: { "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "billing", "gen_ai.conversation.id": conv },
});
const inAgent = trace.setSpan(context.active(), agent);
const chat = tracer.startSpan("chat claude-sonnet", {
  attributes: {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "anthropic",
    "gen_ai.request.model": "claude-sonnet",
    "gen_ai.response.model": "claude-sonnet-20250514",
    "gen_ai.usage.input_tokens": 88,
    "gen_ai.usage.output_tokens": 12,
    "gen_ai.conversation.id": conv,
    "gen_ai.input.messages": JSON.stringify([{ role: "user", parts: [{ type: "text", content: `cancel my plan, ${email}` }] }]),
    "gen_ai.output.messages": JSON.stringify([{ role: "assistant", parts: [{ type: "tool_call", id: "toolu_js_1", name: "cancel_plan", arguments: { plan: "pro" } }] }]),
  },
}, inAgent);
chat.end();
const tool = tracer.startSpan("execute_tool cancel_plan", {
  attributes: {
    "gen_ai.operation.name": "execute_tool",
    "gen_ai.tool.name": "cancel_plan",
    "gen_ai.tool.call.id": "toolu_js_1",
    "gen_ai.tool.call.arguments": JSON.stringify({ plan: "pro" }),
    "gen_ai.conversation.id": conv,
  },
}, inAgent);
tool.end();
agent.end();

const spans = memory.getFinishedSpans();
const send = () => new Promise((resolve) => exporter.export(spans, resolve));
for (const attempt of [1, 2]) {
  const r = await send();
  if (r.code !== 0) {
    console.error(`export ${attempt} failed:`, r.error);
    process.exit(1);
  }
}
await exporter.shutdown();
const traceId = agent.spanContext().traceId;
writeFileSync(out, JSON.stringify({
  mode: "js-json",
  exported: spans.length,
  conversations: [{
    session: conv, trace: traceId, model: "claude-sonnet", version: "claude-sonnet-20250514",
    decisions: 1,
    spans: spans.map((s) => s.spanContext().spanId).sort(),
    tool_span: tool.spanContext().spanId,
  }],
}));
console.log(`js-json: ${spans.length} spans exported twice`);
