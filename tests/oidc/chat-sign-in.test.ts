import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import * as client from 'openid-client';
import { authorizationRequest, discover, exchangeAt, launchBrowser, newContext, screenshot, signInOverHttp, startOidcGateway } from '../helpers/oidc.js';
import { startStubServer } from '../helpers/stub-server.js';
import { botApiAnswersOk, botCalls, callbackUpdate, deliverUpdate, TELEGRAM_ENV, textUpdate } from '../helpers/telegram.js';
import { buttonReply, deliver, graphAnswersOk, graphSends, notification, textMessage, WHATSAPP_ENV } from '../helpers/whatsapp.js';

const graph = await startStubServer();
const botApi = await startStubServer();
afterAll(async () => {
  await graph.close();
  await botApi.close();
});
const gateway = await startOidcGateway({ ...WHATSAPP_ENV, WHATSAPP_GRAPH_URL: graph.url, ...TELEGRAM_ENV, TELEGRAM_API_ROOT: botApi.url });
const { app, clock } = gateway;
const browser = await launchBrowser();

beforeEach(() => {
  graph.requests.length = 0;
  botApi.requests.length = 0;
  graphAnswersOk(graph);
  botApiAnswersOk(botApi);
});

let waCounter = 0;
const whatsappSender = () => ({ waId: `44791170${String((waCounter += 1)).padStart(4, '0')}`, name: 'Kerry' });

/** Opens the hosted page for a new authorization request and chooses a chat. */
async function startChatSignIn(chat: 'WhatsApp' | 'Telegram', width = 1280, screenshotOfStart?: string, phone = false) {
  const config = await discover(gateway);
  const request = await authorizationRequest(config, gateway.clients.confidential.redirect_uris[0]!);
  const context = await newContext(browser, { width, isMobile: phone, hasTouch: phone });
  const page = await context.newPage();
  await page.goto(request.url.href);
  if (screenshotOfStart) await screenshot(page, screenshotOfStart);
  await page.getByRole('button', { name: `Continue with ${chat}` }).click();
  const link = page.getByRole('link', { name: `Open ${chat}` });
  await link.waitFor({ state: 'visible' });
  return { config, request, context, page, link: new URL((await link.getAttribute('href'))!) };
}

describe('Sign in with Chatgate through a chat, in Chromium', () => {
  it('WhatsApp: the page shows a QR code and the link, continues by itself after Confirm; the ID token says amr whatsapp with the sub the same phone got by SMS', async () => {
    const { config, request, context, page, link } = await startChatSignIn('WhatsApp', 1280, 'all-ways-desktop');
    expect(link.origin).toBe('https://wa.me');
    const code = link.searchParams.get('text')!.replace('LOGIN ', '');
    await expect(page.getByRole('img', { name: 'QR code for the sign-in link' }).isVisible()).resolves.toBe(true);
    await expect(page.getByText(`LOGIN ${code}`).isVisible()).resolves.toBe(true);
    await screenshot(page, 'whatsapp-desktop');

    // The same person signed in by SMS code before: the WhatsApp sign-in must give the same sub.
    const sender = whatsappSender();
    const bySms = await authorizationRequest(config, gateway.clients.confidential.redirect_uris[0]!);
    const { callback } = await signInOverHttp(gateway, bySms.url, `+${sender.waId}`);
    const smsTokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: bySms.verifier, expectedState: bySms.state, expectedNonce: bySms.nonce });
    graph.requests.length = 0;

    await deliver(app, notification([textMessage(sender, `LOGIN ${code}`, clock.now())], sender));
    const confirm = graphSends(graph)[0]!.interactive!.action.buttons[0]!.reply;
    expect(confirm.title).toBe('Confirm');
    await deliver(app, notification([buttonReply(sender, confirm.id, 'Confirm', clock.now())], sender));

    const tokens = await exchangeAt(page, config, request);
    expect(tokens.claims()).toMatchObject({ amr: ['whatsapp'], phone_number: `+${sender.waId}`, phone_number_verified: true });
    expect(tokens.claims()!.sub).toBe(smsTokens.claims()!.sub);
    await context.close();
  });

  it('Telegram: /start with the link token and Confirm sign the person in with amr telegram and their Telegram name', async () => {
    const { config, request, context, page, link } = await startChatSignIn('Telegram', 360, 'all-ways-mobile');
    expect(link.href).toMatch(/^https:\/\/t\.me\/chatgate_test_bot\?start=/);
    const person = { id: 812_345, first_name: 'Ana', username: 'ana_tg' };
    await deliverUpdate(app, textUpdate(person, `/start ${link.searchParams.get('start')}`, clock.now()));
    const prompt = botCalls(botApi).find((call) => call.method === 'sendMessage' && call.body.reply_markup?.inline_keyboard);
    const confirm = prompt!.body.reply_markup!.inline_keyboard![0]!.find((button) => button.text === 'Confirm')!;
    await deliverUpdate(app, callbackUpdate(person, confirm.callback_data, 501, clock.now()));

    const tokens = await exchangeAt(page, config, request);
    expect(tokens.claims()).toMatchObject({ amr: ['telegram'], name: 'Ana', preferred_username: 'ana_tg' });
    await context.close();
  });

  it('offers the code channels that are configured, and sends the code by the chosen one', async () => {
    const config = await discover(gateway);
    const context = await newContext(browser);
    const page = await context.newPage();
    await page.goto((await authorizationRequest(config, gateway.clients.confidential.redirect_uris[0]!)).url.href);
    // No DEFAULT_COUNTRY here: the selector starts at the region of the browser's language (en-GB).
    await expect(page.getByLabel('Country').inputValue()).resolves.toBe('GB');
    const choice = page.getByLabel('Send the code by');
    await expect(choice.locator('option').allTextContents()).resolves.toEqual(['SMS', 'WhatsApp', 'Telegram', 'The best way for me']);
    await choice.selectOption('whatsapp');
    const sender = whatsappSender();
    await page.getByLabel('Phone number').fill(`+${sender.waId}`);
    await page.getByRole('button', { name: 'Send code' }).click();
    await page.getByLabel('Code', { exact: true }).waitFor({ state: 'visible', timeout: 5000 });
    await expect(page.locator('#cg-code-sent').textContent()).resolves.toMatch(/^We sent a code to \+44 7911 70\d{4} by WhatsApp\.$/);
    expect(graphSends(graph)).toEqual([expect.objectContaining({ to: `+${sender.waId}`, type: 'template' })]);
    await context.close();
  });

  it('on a phone: the link instead of a QR code; a rejected chat confirmation is shown with a way to start again, and the app gets no code', async () => {
    const { context, page, link } = await startChatSignIn('WhatsApp', 360, undefined, true);
    // On a phone the link opens WhatsApp; there is no QR code to scan.
    await expect(page.getByRole('img', { name: 'QR code for the sign-in link' }).isVisible()).resolves.toBe(false);
    await screenshot(page, 'whatsapp-mobile');
    const code = link.searchParams.get('text')!.replace('LOGIN ', '');
    const sender = whatsappSender();
    await deliver(app, notification([textMessage(sender, `LOGIN ${code}`, clock.now())], sender));
    const cancel = graphSends(graph)[0]!.interactive!.action.buttons[1]!.reply;
    await deliver(app, notification([buttonReply(sender, cancel.id, 'Cancel', clock.now())], sender));

    await page.getByRole('alert').getByText('You cancelled the sign-in in the chat.').waitFor();
    await screenshot(page, 'chat-rejected-mobile');
    await page.getByRole('button', { name: 'Start again' }).click();
    await expect(page.getByLabel('Phone number').isVisible()).resolves.toBe(true);
    expect(page.url()).toContain('/oidc/interaction/');
    await context.close();
  });
});
