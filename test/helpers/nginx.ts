import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';

/**
 * nginx in the foreground on a free port of 127.0.0.1, serving `root`, with a config, logs and
 * temp paths of its own under `workDir`. With `accessLog`, each request is a line there:
 * `status "range" body-bytes`.
 */
export async function startNginx(root: string, workDir: string, accessLog?: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  chmodSync(root, 0o755); // nginx's worker runs as nobody
  const conf = join(workDir, 'nginx');
  mkdirSync(join(conf, 'tmp'), { recursive: true });
  const log = accessLog ? `log_format plan '$status "$http_range" $body_bytes_sent'; access_log ${accessLog} plan;` : 'access_log off;';
  writeFileSync(
    join(conf, 'nginx.conf'),
    `worker_processes 1; daemon off; pid ${conf}/nginx.pid; error_log ${conf}/error.log warn;
events { worker_connections 64; }
http { ${log} client_body_temp_path ${conf}/tmp/body; proxy_temp_path ${conf}/tmp/proxy; fastcgi_temp_path ${conf}/tmp/fastcgi;
  uwsgi_temp_path ${conf}/tmp/uwsgi; scgi_temp_path ${conf}/tmp/scgi; default_type application/octet-stream; server { listen 127.0.0.1:${port}; root ${root}; } }`,
  );
  const child: ChildProcess = spawn('nginx', ['-p', conf, '-e', join(conf, 'error.log'), '-c', join(conf, 'nginx.conf')], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${readFileSync(join(conf, 'error.log'), 'utf8')}`);
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error('nginx did not listen within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}
