import { afterAll, describe, expect, it } from 'vitest';
import { startExampleApp } from '../../examples/node-app/server.js';
import { uniquePhone } from '../helpers/app.js';
import { freePort, launchBrowser, newContext, screenshot, sendCode, startOidcGateway } from '../helpers/oidc.js';

const examplePort = await freePort();
const exampleUrl = `http://127.0.0.1:${examplePort}`;
const gateway = await startOidcGateway({}, [
  { client_id: 'chatgate-example', redirect_uris: [`${exampleUrl}/callback`], post_logout_redirect_uris: [`${exampleUrl}/`], name: 'Chatgate example app', first_party: true },
]);
const example = await startExampleApp({ issuer: gateway.issuer, clientId: 'chatgate-example', baseUrl: exampleUrl, port: examplePort });
afterAll(() => example.close());
const browser = await launchBrowser();

describe('the example app in examples/', () => {
  it('signs in with Chatgate by SMS, lands back signed in with the phone, and signs out at the gateway', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    await page.goto(exampleUrl);
    await page.getByRole('button', { name: 'Sign in with Chatgate' }).click();
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Sign in to Chatgate example app');
    const phone = uniquePhone();
    await sendCode(page, phone);
    await page.getByLabel('Code', { exact: true }).fill(gateway.sms.lastCodeFor(phone));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${exampleUrl}/`);
    await expect(page.locator('#who').textContent()).resolves.toBe(`Signed in as ${phone}`);
    expect(JSON.parse((await page.locator('#claims').textContent())!)).toMatchObject({ iss: gateway.issuer, aud: 'chatgate-example', amr: ['sms'], phone_number: phone });
    await screenshot(page, 'example-app-signed-in');

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Yes, sign me out' }).click();
    await page.waitForURL(`${exampleUrl}/`);
    await expect(page.getByText('You are not signed in.').isVisible()).resolves.toBe(true);
    await context.close();
  });
});
