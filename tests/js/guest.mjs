// A guest's app on the official agents SDK for JavaScript (@openai/agents-realtime), written as
// OpenAI's docs write one, and pointed at Countersign instead of api.openai.com: nothing else
// changes. tests/e2e/test_sdk_agents_js.py runs it against the real stack; docs/agents-js.md
// explains it line by line.
//
//   node guest.mjs <ws://host/v1/realtime?model=gpt-realtime> <client token> <what the guest says>
//
// It prints one JSON object per line on stdout, for the test to read:
//   {"kind": "event", "type": ...}         every server event the transport received
//   {"kind": "approval_requested", ...}    the SDK's tool_approval_requested (staff decide, not the app)
//   {"kind": "tool_call_completed", ...}   the SDK's mcp_tool_call_completed
//   {"kind": "history", "items": [...]}    the session's history at the end
// and exits once the model has answered after the tool call and QUIET_MS more have passed
// without anything else happening (a second answer would show up there).
import { RealtimeAgent, RealtimeSession } from '@openai/agents-realtime';
import { hostedMcpTool } from '@openai/agents-core';

const [url, apiKey, command] = process.argv.slice(2);
const QUIET_MS = Number(process.env.QUIET_MS ?? 3000);
const TIMEOUT_MS = Number(process.env.TIMEOUT_MS ?? 120000);

function out(record) {
  process.stdout.write(JSON.stringify(record) + '\n');
}

const agent = new RealtimeAgent({
  name: 'Front desk',
  instructions: 'You are the front desk of a hotel. Use the hotel tools when a guest asks.',
  tools: [
    // The app's own idea of the server: Countersign serves the registered "hotel" server
    // instead (its URL, credentials and approval rules), so none of this reaches OpenAI.
    hostedMcpTool({
      serverLabel: 'hotel',
      serverUrl: 'https://mcp.example.invalid/hotel',
      requireApproval: 'always',
    }),
  ],
});

const session = new RealtimeSession(agent, { transport: 'websocket', model: 'gpt-realtime' });

let asked = false;
let toolDone = false;
let quietTimer = null;

function finish(code) {
  out({ kind: 'history', items: session.history });
  session.close();
  process.exit(code);
}

session.on('transport_event', (event) => {
  // Deltas are many and say nothing the test reads: their type is enough.
  out(event.type.endsWith('.delta') ? { kind: 'event', type: event.type } : { kind: 'event', type: event.type, event });
  if (event.type === 'conversation.item.done' && event.item?.type === 'mcp_list_tools' && !asked) {
    asked = true;
    session.sendMessage(command); // conversation.item.create + response.create, as the SDK does
  }
  if (toolDone && event.type === 'response.done') {
    // The answer after the tool call: wait a little longer, then report what happened.
    clearTimeout(quietTimer);
    quietTimer = setTimeout(() => finish(0), QUIET_MS);
  }
});

session.on('tool_approval_requested', (_context, _agent, request) => {
  // Staff decide in Countersign; an app that still answered would get an `error` event back.
  out({ kind: 'approval_requested', item: request.approvalItem.rawItem });
});

session.on('mcp_tool_call_completed', (_context, _agent, call) => {
  toolDone = true;
  out({ kind: 'tool_call_completed', call });
});

session.on('error', (error) => {
  out({ kind: 'error', error: String(error?.error?.message ?? error?.error ?? error) });
});

setTimeout(() => {
  out({ kind: 'timeout' });
  finish(2);
}, TIMEOUT_MS);

await session.connect({ apiKey, url });
out({ kind: 'connected' });
