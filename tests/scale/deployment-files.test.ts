// No container engine or cluster runs on this machine: these tests check the structure of the multi-instance compose
// file and the Kubernetes example, which were validated, not run.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';

const root = new URL('../../', import.meta.url);
const read = (file: string) => readFileSync(new URL(file, root), 'utf8');

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  deploy?: { replicas?: number };
  depends_on?: Record<string, { condition: string }> | string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  stop_grace_period?: string;
  volumes?: string[];
  ports?: string[];
}

describe('deploy/docker-compose.scale.yml', () => {
  const compose = parse(read('deploy/docker-compose.scale.yml'), { merge: true }) as { services: Record<string, Service> };
  const { services } = compose;
  const gateway = services.gateway!;

  it('runs a three-member MongoDB replica set, initiated with all three members', () => {
    const members = ['mongo1', 'mongo2', 'mongo3'];
    for (const name of members) {
      expect(services[name]?.image).toMatch(/^mongo:8/);
      expect(services[name]?.command?.join(' ')).toContain('--replSet rs0');
      expect(services[name]?.volumes?.some((volume) => volume.endsWith(':/data/db'))).toBe(true);
    }
    const check = services.mongo1!.healthcheck!.test.join(' ');
    for (const name of members) expect(check).toContain(`host: '${name}:27017'`);
  });

  it('runs two or more gateway replicas on the replica set and Redis, production settings, secrets from files', () => {
    expect(gateway.build).toBe('..');
    expect(gateway.deploy?.replicas).toBeGreaterThanOrEqual(2);
    expect(gateway.depends_on).toEqual({ mongo1: { condition: 'service_healthy' }, redis: { condition: 'service_healthy' } });
    const env = gateway.environment!;
    expect(env.NODE_ENV).toBe('production');
    expect(env.MONGODB_URI).toBe('mongodb://mongo1:27017,mongo2:27017,mongo3:27017/chatgate?replicaSet=rs0');
    expect(env.REDIS_URL).toBe('redis://redis:6379');
    expect(env.OTP_PEPPER_FILE).toBeDefined();
    expect(env.JWT_PRIVATE_JWKS_FILE).toBeDefined();
    expect(gateway.ports).toBeUndefined();
    expect(gateway.healthcheck?.test.join(' ')).toContain('/ready');
  });

  it('puts one nginx in front, appending the client address, and tells the gateway to trust exactly that one hop', () => {
    expect(services.nginx?.image).toMatch(/^nginx:/);
    expect(services.nginx?.ports).toEqual(['8080:80']);
    expect(gateway.environment?.TRUST_PROXY).toBe('1');
    const nginx = read('deploy/nginx.conf');
    expect(nginx).toContain('server gateway:3000;');
    expect(nginx).toContain('proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;');
    expect(nginx).toMatch(/proxy_next_upstream error/);
  });

  it('runs Redis without persistence, with a healthcheck', () => {
    expect(services.redis?.image).toMatch(/^redis:7/);
    expect(services.redis?.command?.join(' ')).toContain('--save');
    expect(services.redis?.healthcheck?.test).toEqual(['CMD', 'redis-cli', 'ping']);
  });

  it('gives a stopping gateway longer than its own 10 s shutdown deadline', () => {
    expect(Number.parseInt(gateway.stop_grace_period ?? '0', 10)).toBeGreaterThan(10);
  });
});

interface Probe {
  httpGet: { path: string; port: string };
  periodSeconds: number;
  timeoutSeconds?: number;
  failureThreshold: number;
}
interface KubeDocument {
  kind: string;
  metadata: { name: string };
  spec: Record<string, unknown> & {
    replicas?: number;
    minAvailable?: number;
    selector?: Record<string, unknown>;
    template?: {
      metadata: { labels: Record<string, string> };
      spec: {
        terminationGracePeriodSeconds: number;
        containers: {
          ports: { name: string; containerPort: number }[];
          env: { name: string; value?: string }[];
          readinessProbe: Probe;
          livenessProbe: Probe;
          lifecycle?: { preStop?: { sleep?: { seconds: number } } };
        }[];
      };
    };
  };
}

describe('deploy/kubernetes/chatgate.yaml', () => {
  const documents = parseAllDocuments(read('deploy/kubernetes/chatgate.yaml')).map((document) => document.toJS() as KubeDocument);
  const byKind = (kind: string) => documents.find((document) => document.kind === kind)!;
  const deployment = byKind('Deployment');
  const pod = deployment.spec.template!.spec;
  const container = pod.containers[0]!;

  it('holds a Deployment, a Service and a PodDisruptionBudget selecting the same pods', () => {
    expect(documents.map((document) => document.kind).sort()).toEqual(['Deployment', 'PodDisruptionBudget', 'Service']);
    const labels = deployment.spec.template!.metadata.labels;
    expect(deployment.spec.selector).toEqual({ matchLabels: labels });
    expect(byKind('Service').spec.selector).toEqual(labels);
    expect(byKind('PodDisruptionBudget').spec.selector).toEqual({ matchLabels: labels });
    expect(byKind('PodDisruptionBudget').spec.minAvailable).toBeLessThan(deployment.spec.replicas!);
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
  });

  it('probes readiness on /ready and liveness on /health', () => {
    expect(container.readinessProbe.httpGet).toEqual({ path: '/ready', port: 'http' });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/health', port: 'http' });
    expect(container.ports).toEqual([{ name: 'http', containerPort: 3000 }]);
    expect(container.env).toContainEqual({ name: 'TRUST_PROXY', value: '1' });
  });

  it('terminates gracefully within the probe timings: out of rotation first, then the 10 s shutdown, then the kill', () => {
    const preStop = container.lifecycle?.preStop?.sleep?.seconds ?? 0;
    const readiness = container.readinessProbe;
    // The pod leaves the endpoints before the process stops taking requests.
    expect(preStop).toBeGreaterThanOrEqual(readiness.periodSeconds);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(preStop + 10);
    // Liveness does not kill a pod that is merely waiting for its database (that is readiness's job).
    expect(container.livenessProbe.periodSeconds * container.livenessProbe.failureThreshold).toBeGreaterThan(
      readiness.periodSeconds * readiness.failureThreshold,
    );
  });
});
