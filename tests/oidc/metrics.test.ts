import * as client from 'openid-client';
import { describe, expect, it } from 'vitest';
import { uniquePhone } from '../helpers/app.js';
import { authorizationRequest, discover, signInOverHttp, startOidcGateway } from '../helpers/oidc.js';
import { createMetrics } from '../../src/observability/metrics.js';

const gateway = await startOidcGateway();
const metricsText = () => gateway.app.metrics.registry.metrics();

describe('OpenID Provider metrics', () => {
  it('counts an authorization, a code exchange, a refresh and a revocation by client, from a real sign-in', async () => {
    const config = await discover(gateway);
    const request = await authorizationRequest(config, gateway.clients.confidential.redirect_uris[0]!);
    const { callback } = await signInOverHttp(gateway, request.url, uniquePhone());
    const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
    await client.tokenRevocation(config, refreshed.refresh_token!);

    // The audit trail records after the answer is sent: wait for the counters rather than for a fixed time.
    await expect.poll(metricsText).toContain('chatgate_oidc_revocations_total{client="web-app"} 1');
    const text = await metricsText();
    expect(text).toContain('chatgate_oidc_authorizations_total{client="web-app"} 1');
    expect(text).toContain('chatgate_oidc_token_exchanges_total{client="web-app"} 1');
    expect(text).toContain('chatgate_oidc_token_refreshes_total{client="web-app"} 1');
    // Nothing that identifies a person or a token ever becomes a label.
    expect(text).not.toMatch(/chatgate_oidc_\w+\{[^}]*(sub|user|grant|phone|ip)=/);
  });

  it('counts logouts, and keeps an odd client id out of the labels', async () => {
    const metrics = createMetrics();
    metrics.observeAudit({ type: 'oidc.logout', userId: 'u1', detail: { clientId: 'web-app' } });
    metrics.observeAudit({ type: 'oidc.authorized', userId: 'u1', detail: { clientId: 'https://evil.example/<script>' } });
    const text = await metrics.registry.metrics();
    expect(text).toContain('chatgate_oidc_logouts_total{client="web-app"} 1');
    expect(text).toContain('chatgate_oidc_authorizations_total{client="other"} 1');
  });
});
