import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import * as client from 'openid-client';
import type { Page } from 'playwright-core';
import { buildTestApp } from '../helpers/app.js';
import { authorizationRequest, discover, exchangeAt, freePort, launchBrowser, newContext, screenshot, signInOverHttp, startOidcGateway } from '../helpers/oidc.js';
import { startStubServer } from '../helpers/stub-server.js';
import { botApiAnswersOk, TELEGRAM_ENV } from '../helpers/telegram.js';
import { startTelegramOidcStandIn, TELEGRAM_OIDC, type TelegramAccount } from '../helpers/telegram-oidc.js';

// The stand-in for Telegram must know our callback URL, and the gateway the stand-in's issuer: the port comes first.
const port = await freePort();
const standIn = await startTelegramOidcStandIn(`http://127.0.0.1:${port}/auth/telegram/callback`);
const botApi = await startStubServer();
afterAll(async () => {
  await standIn.close();
  await botApi.close();
});
const TELEGRAM_OIDC_ENV = {
  TELEGRAM_OIDC_CLIENT_ID: TELEGRAM_OIDC.clientId,
  TELEGRAM_OIDC_CLIENT_SECRET: TELEGRAM_OIDC.clientSecret,
  TELEGRAM_OIDC_ISSUER: standIn.issuer,
};
const gateway = await startOidcGateway({ ...TELEGRAM_ENV, TELEGRAM_API_ROOT: botApi.url, ...TELEGRAM_OIDC_ENV }, [], port);
const browser = await launchBrowser();
const callbackUri = gateway.clients.confidential.redirect_uris[0]!;

beforeEach(() => {
  botApiAnswersOk(botApi);
});

let counter = 0;
function newAccount(): TelegramAccount {
  counter += 1;
  return { sub: `tg-button-${counter}-${Date.now()}`, id: 6_200_000 + counter, name: `Button ${counter}`, username: `button_${counter}`, phone: `447913${String(400_000 + counter)}` };
}

/** Opens the hosted page of a new authorization request and presses "Log in with Telegram". */
async function pressLogInWithTelegram(page: Page, screenshotName?: string) {
  const config = await discover(gateway);
  const request = await authorizationRequest(config, callbackUri);
  await page.goto(request.url.href);
  if (screenshotName) await screenshot(page, screenshotName);
  await page.getByRole('button', { name: 'Log in with Telegram' }).click();
  return { config, request };
}

describe('"Log in with Telegram" on the hosted page, in Chromium', () => {
  it('signs in through Telegram OpenID Connect: the app gets tokens with amr telegram, the phone Telegram verified, and the sub an SMS sign-in of that phone gets', async () => {
    const account = newAccount();
    const phone = `+${account.phone!}`;
    // The same phone signed in by SMS code before: Telegram's login must land on that same person.
    const config = await discover(gateway);
    const bySms = await authorizationRequest(config, callbackUri);
    const { callback } = await signInOverHttp(gateway, bySms.url, phone);
    const smsTokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: bySms.verifier, expectedState: bySms.state, expectedNonce: bySms.nonce });

    standIn.nextLogin(account);
    const context = await newContext(browser);
    const page = await context.newPage();
    const { request } = await pressLogInWithTelegram(page, 'telegram-login-desktop');
    // Back from Telegram, the person confirms that this browser is theirs (INTENT_REQUIRE_CONFIRM, the default).
    await page.getByRole('button', { name: 'Confirm' }).click();

    const tokens = await exchangeAt(page, config, request);
    expect(tokens.claims()).toMatchObject({ amr: ['telegram'], phone_number: phone, phone_number_verified: true, name: account.name, preferred_username: account.username });
    expect(tokens.claims()!.sub).toBe(smsTokens.claims()!.sub);
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, tokens.claims()!.sub);
    expect(userinfo).toMatchObject({ phone_number: phone, phone_number_verified: true });
    await context.close();
  });

  it('on a phone: a consent denied in Telegram is shown with a way to start again; a login cancelled at the confirmation too, and the app gets no code', async () => {
    const context = await newContext(browser, { width: 360, height: 740, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    standIn.nextLogin('deny');
    await pressLogInWithTelegram(page, 'telegram-login-mobile');
    await page.getByRole('alert').getByText('You did not allow the login in Telegram. Nothing was shared.').waitFor();
    // The outcome is not left in the address bar: a reload starts afresh.
    expect(new URL(page.url()).searchParams.has('telegram_login')).toBe(false);
    expect(page.url()).toContain('/oidc/interaction/');
    await screenshot(page, 'telegram-login-denied-mobile');

    await page.getByRole('button', { name: 'Start again' }).click();
    await expect(page.getByLabel('Phone number').isVisible()).resolves.toBe(true);
    standIn.nextLogin(newAccount());
    await page.getByRole('button', { name: 'Log in with Telegram' }).click();
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.getByRole('alert').getByText('You cancelled the login with Telegram.').waitFor();
    await page.getByRole('button', { name: 'Start again' }).click();
    await expect(page.getByRole('button', { name: 'Log in with Telegram' }).isVisible()).resolves.toBe(true);
    expect(page.url().startsWith(callbackUri)).toBe(false);
    await context.close();
  });

  it('speaks the page language on the button and after the way back', async () => {
    const context = await newContext(browser, { locale: 'es-ES' });
    const page = await context.newPage();
    standIn.nextLogin('deny');
    const config = await discover(gateway);
    await page.goto((await authorizationRequest(config, callbackUri)).url.href);
    await page.getByRole('button', { name: 'Iniciar sesión con Telegram' }).click();
    await page.getByRole('alert').getByText('No permitiste el inicio de sesión en Telegram. No se compartió nada.').waitFor();
    await expect(page.locator('html').getAttribute('lang')).resolves.toBe('es');
    await context.close();
  });
});

describe('"Log in with Telegram" on the hosted page, without a browser', () => {
  it('is not offered, and its intents are refused, when TELEGRAM_OIDC_CLIENT_ID/SECRET are unset', async () => {
    const { app } = await buildTestApp();
    const page = await app.inject({ method: 'GET', url: '/login' });
    expect(page.statusCode).toBe(200);
    expect(page.body).not.toContain('cg-telegram-login');
    const intent = await app.inject({ method: 'POST', url: '/login/api/intents', payload: { chat: 'telegram_login' } });
    expect(intent.statusCode).toBe(422);
    expect(intent.json()).toMatchObject({ error: 'channel_unavailable' });
  });

  it('gives the page a link to the Telegram login that completes the intent and returns to the page', async () => {
    const page = await gateway.app.inject({ method: 'GET', url: '/login' });
    expect(page.body).toContain('<button type="button" class="chat chat-telegram-login" id="cg-telegram-login">Log in with Telegram</button>');
    const intent = await gateway.app.inject({ method: 'POST', url: '/login/api/intents', payload: { chat: 'telegram_login', language: 'pt' } });
    expect(intent.statusCode).toBe(201);
    const body = intent.json() as { intentId: string; pollToken: string; link: string };
    const link = new URL(body.link, gateway.issuer);
    expect(link.pathname).toBe('/auth/telegram/login');
    expect(link.searchParams.get('intent')).toMatch(/^[\w-]{43}$/);
    expect(link.searchParams.get('return_to')).toBe('/login?lang=pt');
    const poll = await gateway.app.inject({ method: 'GET', url: `/login/api/intents/${body.intentId}`, headers: { authorization: `Bearer ${body.pollToken}` } });
    expect(poll.json()).toEqual({ status: 'pending' });
  });
});
