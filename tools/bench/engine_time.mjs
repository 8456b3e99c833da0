// Times an inference engine opening a model, for bench-formats. One model
// per process, so every figure includes the page faults of a fresh map.
//   node engine_time.mjs llama MODEL   {"load_ms", "first_token_ms"}
//   node engine_time.mjs ort MODEL     {"session_ms"}
// llama: node-llama-cpp (prebuilt CPU llama.cpp, mmap on); the library's
// own start-up (getLlama) is not counted. first_token_ms: context creation,
// prompt evaluation and the first generated token. ort: onnxruntime-node,
// CPU, session creation (reading and optimizing the graph and weights).
// Packages are resolved from the working directory.
import { createRequire } from "node:module";
import path from "node:path";
import process from "node:process";

const [engine, model] = process.argv.slice(2);
const require = createRequire(path.join(process.cwd(), "noop.js"));
const now = () => Number(process.hrtime.bigint()) / 1e6;

if (engine === "llama") {
	const { getLlama } = await import(require.resolve("node-llama-cpp"));
	const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
	let t = now();
	const m = await llama.loadModel({ modelPath: model, useMmap: true });
	const load = now() - t;
	t = now();
	const ctx = await m.createContext({ contextSize: 256, seed: 0, threads: 1 });
	const seq = ctx.getSequence();
	for await (const tok of seq.evaluate(m.tokenize("Once upon a time", true),
					     { temperature: 0 })) {
		void tok;
		break;
	}
	const first = now() - t;
	process.stdout.write(JSON.stringify({ load_ms: load, first_token_ms: first }) + "\n");
	await ctx.dispose();
	await m.dispose();
	await llama.dispose();
} else if (engine === "ort") {
	const ort = require(require.resolve("onnxruntime-node"));
	let t = now();
	const sess = await ort.InferenceSession.create(model, {
		executionProviders: ["cpu"], intraOpNumThreads: 1, interOpNumThreads: 1,
	});
	const session = now() - t;
	process.stdout.write(JSON.stringify({ session_ms: session }) + "\n");
	await sess.release();
} else {
	console.error("usage: node engine_time.mjs llama|ort MODEL");
	process.exit(2);
}
