import OpenAI from 'openai';
import http from 'node:http';
const mode = process.argv[2];
const opts = { baseURL: 'http://127.0.0.1:18555/v1', apiKey: 'x', maxRetries: 0, timeout: 60000 };
const client = new OpenAI(opts);
const tools = Array.from({ length: 13 }, (_, i) => ({ type: 'function', function: { name: 'tool' + i, description: 'd'.repeat(200), parameters: { type: 'object', properties: { a: { type: 'string', description: 'x'.repeat(50) } } } } }));
const messages = [{ role: 'system', content: 's'.repeat(1500) }, { role: 'user', content: 'u'.repeat(300) }];
const N = 20000, C = 200; let done = 0;
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
function httpFetch(url, init) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers = {};
    new Headers(init.headers).forEach((v, k) => { headers[k] = v; });
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: init.method, headers, agent }, res => {
      const chunks = [];
      res.on('data', c => chunks.push(c));
      res.on('end', () => {
        const h = new Headers();
        for (let i = 0; i < res.rawHeaders.length; i += 2) h.append(res.rawHeaders[i], res.rawHeaders[i + 1]);
        resolve(new Response(Buffer.concat(chunks), { status: res.statusCode, statusText: res.statusMessage, headers: h }));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body);
  });
}
const client2 = new OpenAI({ ...opts, fetch: httpFetch });
async function one() {
  if (mode === 'sdk-http') return client2.chat.completions.create({ model: 'm', messages, tools, temperature: 0 }, { headers: { 'X-Envfleet-Stage': 'rollout.policy' } });
  if (mode === 'fetch') { const r = await fetch('http://127.0.0.1:18555/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer x' }, body: JSON.stringify({ model: 'm', messages, tools, temperature: 0 }) }); return r.json(); }
  if (mode === 'http') { const r = await httpFetch('http://127.0.0.1:18555/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer x' }, body: JSON.stringify({ model: 'm', messages, tools, temperature: 0 }) }); return r.json(); }
  if (mode === 'sdk') return client.chat.completions.create({ model: 'm', messages, tools, temperature: 0 }, { headers: { 'X-Envfleet-Stage': 'rollout.policy' } });
}
for (let i = 0; i < 200; i++) await one();
const t0 = process.cpuUsage(); const w0 = Date.now();
async function loop() { while (done < N) { done++; await one(); } }
await Promise.all(Array.from({ length: C }, loop));
const cu = process.cpuUsage(t0);
console.log(mode, 'cpu us/req', ((cu.user + cu.system) / N).toFixed(0), 'user', (cu.user/N).toFixed(0), 'sys', (cu.system/N).toFixed(0), 'wall', Date.now() - w0);
