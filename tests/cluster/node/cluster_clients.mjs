// Cluster-aware Node.js clients against a geocache region: ioredis Cluster and
// node-redis createCluster. Usage: node cluster_clients.mjs <client> <port> [<port>...]
// Prints one JSON line of what it saw; the Python test asserts on it.
import IORedis from "ioredis";
import { createCluster } from "redis";

const [which, ...ports] = process.argv.slice(2);
const nodes = ports.map((port) => ({ host: "127.0.0.1", port: Number(port) }));
const N = 1000;

async function withIORedis() {
  const cluster = new IORedis.Cluster(nodes, { redisOptions: { connectTimeout: 2000 } });
  try {
    for (let i = 0; i < N; i++) await cluster.set(`io:${i}`, `v${i}`);
    let read = 0;
    for (let i = 0; i < N; i++) if ((await cluster.get(`io:${i}`)) === `v${i}`) read++;
    const pipe = cluster.pipeline();
    for (let i = 0; i < 50; i++) pipe.incr("{io}:count");
    await pipe.exec();
    const tx = await cluster.multi().set("{acct}:io", "1").incrby("{acct}:io", 41).get("{acct}:io").exec();
    return {
      nodes: cluster.nodes("master").length,
      read,
      count: await cluster.get("{io}:count"),
      tx: tx.map(([err, value]) => (err ? String(err) : value)),
    };
  } finally {
    cluster.disconnect();
  }
}

async function withNodeRedis() {
  const cluster = createCluster({
    rootNodes: nodes.map(({ host, port }) => ({ url: `redis://${host}:${port}` })),
  });
  cluster.on("error", () => {});
  await cluster.connect();
  try {
    for (let i = 0; i < N; i++) await cluster.set(`nr:${i}`, `v${i}`);
    let read = 0;
    for (let i = 0; i < N; i++) if ((await cluster.get(`nr:${i}`)) === `v${i}`) read++;
    const tx = await cluster.multi().set("{acct}:nr", "1").incrBy("{acct}:nr", 41).get("{acct}:nr").exec();
    return { nodes: cluster.masters.length, read, count: null, tx: tx.map(String) };
  } finally {
    await cluster.close();
  }
}

const run = which === "ioredis" ? withIORedis : withNodeRedis;
run().then(
  (result) => {
    console.log(JSON.stringify(result));
    process.exit(0);
  },
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
