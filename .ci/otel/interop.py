"""Real OpenTelemetry clients against a running agentrail server (DESIGN.md §9.1).

    interop.py emit MODE URL KEY OUT    # manual | openai-v2 | openai-v2-events | openinference
    interop.py check URL DATA_DIR TENANT:KEY:OUT...

`emit` runs in its own process per mode (the instrumentations patch the `openai` client, and
read their settings from the environment at import): it sends GenAI spans through the
OpenTelemetry Python SDK's OTLP/HTTP protobuf exporter and writes what it sent (trace ids,
span ids, sessions, call ids) to OUT as JSON. `openai-v2` and `openinference` wrap the real
`openai` client pointed at a small fake OpenAI-compatible endpoint started here.
`check` queries every sent conversation back through the HTTP API, each mode in its own
tenant (OUT may also come from export_json.mjs, the JS SDK's OTLP JSON exporter).
"""

import http.server
import json
import os
import sys
import threading
import time
import urllib.request

EMAIL = "otel.interop@example.com"


def api(url, key, path):
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + key})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


# ---- a fake OpenAI-compatible endpoint ---------------------------------------------------------


class FakeOpenAI(http.server.BaseHTTPRequestHandler):
    """Chat completions: asks for the `lookup_order` tool unless the conversation already holds
    a tool result, then answers in text. The response model is a dated version."""

    calls = 0

    def log_message(self, *_):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        FakeOpenAI.calls += 1
        n = FakeOpenAI.calls
        has_result = any(m.get("role") == "tool" for m in body.get("messages", []))
        if has_result:
            message = {"role": "assistant", "content": "Order 7 has shipped."}
            finish = "stop"
        else:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_fake_{n}",
                        "type": "function",
                        "function": {"name": "lookup_order", "arguments": '{"order": 7}'},
                    }
                ],
            }
            finish = "tool_calls"
        out = {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"] + "-2024-07-18",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28},
        }
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def fake_openai():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"


# ---- emitting ----------------------------------------------------------------------------------


def log_provider(url, key):
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    exporter = OTLPLogExporter(endpoint=url + "/v1/logs", headers={"Authorization": "Bearer " + key})
    lp = LoggerProvider(resource=Resource.create({"service.name": "interop-agent"}))
    memory = InMemoryLogRecordExporter()
    lp.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    lp.add_log_record_processor(SimpleLogRecordProcessor(memory))
    return lp, exporter, memory


def provider(url, key):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = OTLPSpanExporter(
        endpoint=url + "/v1/traces", headers={"Authorization": "Bearer " + key}
    )
    tp = TracerProvider(resource=Resource.create({"service.name": "interop-agent"}))
    tp.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=512))
    memory = InMemorySpanExporter()
    tp.add_span_processor(SimpleSpanProcessor(memory))
    return tp, exporter, memory


def hexid(n, width):
    return format(n, f"0{width}x")


def emit(mode, url, key, out):
    tp, exporter, memory = provider(url, key)
    tracer = tp.get_tracer("agentrail.interop")
    sent = {"mode": mode, "conversations": []}
    if mode == "manual":
        conv = "conv-interop-manual"
        with tracer.start_as_current_span(
            "invoke_agent support",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "support",
                "gen_ai.conversation.id": conv,
            },
        ) as agent:
            with tracer.start_as_current_span(
                "chat gpt-4o",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.usage.input_tokens": 120,
                    "gen_ai.usage.output_tokens": 30,
                    "gen_ai.response.finish_reasons": ["tool_calls"],
                    "gen_ai.conversation.id": conv,
                    "gen_ai.input.messages": json.dumps(
                        [{"role": "user", "parts": [{"type": "text",
                          "content": f"refund order 7, write to {EMAIL}"}]}]
                    ),
                    "gen_ai.output.messages": json.dumps(
                        [{"role": "assistant", "parts": [{"type": "tool_call", "id": "call_manual_1",
                          "name": "issue_refund", "arguments": {"order": 7}}]}]
                    ),
                },
            ):
                pass
            with tracer.start_as_current_span(
                "review issue_refund",
                attributes={
                    "agentrail.review.decision": "approve",
                    "agentrail.review.reviewer.id": "lead-7",
                    "agentrail.review.reviewer.role": "support-lead",
                    "agentrail.review.proposed.tool_call_id": "call_manual_1",
                    "agentrail.review.rationale": "within the refund policy",
                    "gen_ai.conversation.id": conv,
                },
            ):
                time.sleep(0.01)
            with tracer.start_as_current_span(
                "execute_tool issue_refund",
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "issue_refund",
                    "gen_ai.tool.call.id": "call_manual_1",
                    "gen_ai.tool.call.arguments": json.dumps({"order": 7}),
                    "gen_ai.tool.call.result": "refunded",
                    "gen_ai.conversation.id": conv,
                },
            ):
                pass
        trace = hexid(agent.get_span_context().trace_id, 32)
        sent["conversations"].append(
            {"session": conv, "trace": trace, "model": "gpt-4o", "version": "gpt-4o-2024-08-06",
             "decisions": 1}
        )
    else:
        import openai

        base = fake_openai()
        logs = None
        if mode == "openai-v2":
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

            OpenAIInstrumentor().instrument(tracer_provider=tp)
        elif mode == "openai-v2-events":
            # Content in log events (EVENT_ONLY), spans without it.
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

            logs = log_provider(url, key)
            OpenAIInstrumentor().instrument(tracer_provider=tp, logger_provider=logs[0])
        else:
            from openinference.instrumentation.openai import OpenAIInstrumentor

            OpenAIInstrumentor().instrument(tracer_provider=tp)
        client = openai.OpenAI(base_url=base, api_key="sk-fake")
        with tracer.start_as_current_span(
            "invoke_agent orders",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "orders"},
        ) as agent:
            messages = [{"role": "user", "content": f"Where is order 7? Mail {EMAIL}"}]
            tools = [{"type": "function", "function": {"name": "lookup_order",
                      "parameters": {"type": "object", "properties": {"order": {"type": "integer"}}}}}]
            first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
            call = first.choices[0].message.tool_calls[0]
            with tracer.start_as_current_span(
                "execute_tool lookup_order",
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "lookup_order",
                    "gen_ai.tool.call.id": call.id,
                    "gen_ai.tool.call.arguments": call.function.arguments,
                },
            ):
                result = '{"status": "shipped"}'
            messages += [
                first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": result},
            ]
            client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
        trace = hexid(agent.get_span_context().trace_id, 32)
        sent["conversations"].append(
            {
                "session": "otel-trace-" + trace,
                "trace": trace,
                "model": "gpt-4o-mini",
                "version": "gpt-4o-mini-2024-07-18",
                "decisions": 2,
                # Without content on spans the decision names no tool call id.
                "linked": logs is None,
            }
        )
    assert tp.force_flush(30_000), "the batch processor did not flush"
    spans = memory.get_finished_spans()
    for c in sent["conversations"]:
        c["spans"] = sorted(
            hexid(s.context.span_id, 16) for s in spans if hexid(s.context.trace_id, 32) == c["trace"]
        )
        c["tool_span"] = next(
            hexid(s.context.span_id, 16) for s in spans
            if hexid(s.context.trace_id, 32) == c["trace"] and s.name.startswith("execute_tool")
        )
    # The exporter's retry: the same spans again, in one request.
    from opentelemetry.sdk.trace.export import SpanExportResult

    assert exporter.export(spans) == SpanExportResult.SUCCESS, "re-export refused"
    sent["exported"] = len(spans)
    sent["logs"] = 0
    if mode != "manual" and logs is not None:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        lp, log_exporter, log_memory = logs
        lp.force_flush()
        records = log_memory.get_finished_logs()
        assert records, "the instrumentation sent no log events"
        assert log_exporter.export(records) == LogRecordExportResult.SUCCESS, "logs refused"
        sent["logs"] = len(records)
        lp.shutdown()
    tp.shutdown()
    with open(out, "w") as f:
        json.dump(sent, f)
    print(f"{mode}: {len(spans)} spans exported twice")


# ---- checking ----------------------------------------------------------------------------------


def check(url, data_dir, runs):
    for run in runs:
        tenant, key, out = run.split(":", 2)
        sent = json.load(open(out))
        total = 0
        for c in sent["conversations"]:
            # Session reconstruction finds every span of the conversation, once, chained.
            s = api(url, key, f"/v1/tenants/{tenant}/sessions/{c['session']}?limit=1000")
            got = sorted(e["trace"]["span_id"] for e in s["events"]
                         if e["event_type"] != "custom.otel.log")
            assert got == c["spans"], (sent["mode"], got, c["spans"])
            assert s["chain"]["unbroken"], s["chain"]
            total += len(got)
            # GenAI log events: in the session, each caused by a span of it.
            logs = [e for e in s["events"] if e["event_type"] == "custom.otel.log"]
            assert len(logs) == sent.get("logs", 0), (sent["mode"], len(logs), sent.get("logs"))
            for e in logs:
                assert e["caused_by"][0]["hash"] is not None or e["caused_by"][0]["event_id"], e
                assert e["trace"]["span_id"] in c["spans"], e
                assert "$enc" not in json.dumps(e["payload"]), e
            total += len(logs)
            # The tool call's causal chain reaches the model decision that asked for it.
            tool = f"otel-{c['trace']}-{c['tool_span']}"
            g = api(url, key, f"/v1/tenants/{tenant}/events/{tool}/causes?depth=5")
            types = {n["event_id"]: n["event_type"] for n in g["nodes"]}
            linked = [e for e in g["edges"] if e["effect"] == tool and e.get("via") == "tool_call_id"]
            if c.get("linked", True):
                assert linked and types[linked[0]["cause"]] == "model.decision", (sent["mode"], g)
            # Model attribution counts every decision under the response model.
            m = api(url, key, f"/v1/tenants/{tenant}/models/{c['model']}")
            versions = {v["version"]: v["count"] for v in m["counts_by_version"]}
            assert versions.get(c["version"]) == c["decisions"], (sent["mode"], m)
            how = ("tool -> decision by call id" if c.get("linked", True)
                   else f"{len(logs)} log events attached to their spans")
            print(f"{sent['mode']}: {len(got)} spans in session, {how}, "
                  f"{c['decisions']} decision(s) of {c['version']}")
        # The re-export duplicated nothing.
        listed = api(url, key, f"/v1/tenants/{tenant}/events?limit=1000")
        ids = [e["event_id"] for e in listed["events"]]
        assert len(ids) == len(set(ids)) == total == sent["exported"] + sent.get("logs", 0), (
            len(ids), total)
    # Prompt content is tokenized: no file of the data directory holds the address.
    needle = EMAIL.encode()
    for root, _, files in os.walk(data_dir):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert needle not in f.read(), os.path.join(root, name)
    print(f"ok: every conversation queried back, no duplicates, no address in {data_dir}")


if __name__ == "__main__":
    if sys.argv[1] == "emit":
        emit(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4:])
