// Loads a GGUF model with llama.cpp (node-llama-cpp, prebuilt CPU
// binaries, mmap on) and prints the text of N tokens generated greedily
// from a prompt. Usage: node llama_generate.mjs MODEL PROMPT N
// node-llama-cpp is resolved from NODE_PATH or the working directory's
// node_modules (the integration test installs it in a scratch directory).
import { createRequire } from "node:module";
import path from "node:path";
import process from "node:process";

const [model, prompt, count] = process.argv.slice(2);
if (!model || prompt === undefined || !count) {
	console.error("usage: node llama_generate.mjs MODEL PROMPT N");
	process.exit(2);
}

// resolve from the caller's directory, not from this file's
const require = createRequire(path.join(process.cwd(), "noop.js"));
const { getLlama } = await import(require.resolve("node-llama-cpp"));

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const m = await llama.loadModel({ modelPath: model, useMmap: true });
const ctx = await m.createContext({ contextSize: 256, seed: 0 });
const seq = ctx.getSequence();
const tokens = m.tokenize(prompt, true);
const out = [];
for await (const t of seq.evaluate(tokens, { temperature: 0 })) {
	out.push(t);
	if (out.length >= Number(count) || m.isEogToken(t))
		break;
}
process.stdout.write(m.detokenize(out));
process.stdout.write("\n");
await ctx.dispose();
await m.dispose();
await llama.dispose();
