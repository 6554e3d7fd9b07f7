import { describe, expect, it } from 'vitest';
import { uniquePhone } from '../helpers/app.js';
import { authorizationRequest, discover, launchBrowser, newContext, screenshot, sendCode, startOidcGateway } from '../helpers/oidc.js';

const gateway = await startOidcGateway({ DEFAULT_COUNTRY: 'GB', SERVICE_NAME: 'Acme ID', LOGIN_PRIMARY_COLOR: '#6d28d9' });
const browser = await launchBrowser();
const config = await discover(gateway);
const callbackUri = gateway.clients.confidential.redirect_uris[0]!;

describe('the hosted login page', () => {
  it('/login without an OpenID request signs in by SMS and shows who you are and the token claims (phone width, keyboard only)', async () => {
    const context = await newContext(browser, { width: 360, height: 740, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    const response = await page.goto(`${gateway.issuer}/login`);
    expect(response!.headers()['content-security-policy']).toMatch(/script-src 'self'; style-src 'self'/);
    // The country selector starts at DEFAULT_COUNTRY; the phone field is what a phone keyboard and autofill expect.
    await expect(page.getByLabel('Country').inputValue()).resolves.toBe('GB');
    const phoneField = page.getByLabel('Phone number');
    await expect(phoneField.getAttribute('autocomplete')).resolves.toBe('tel');
    await screenshot(page, 'login-phone-mobile');

    const phone = uniquePhone();
    // National form, the country coming from the selector.
    await phoneField.focus();
    await page.keyboard.type(`0${phone.slice(3)}`);
    await page.keyboard.press('Enter');
    const codeField = page.getByLabel('Code', { exact: true });
    await codeField.waitFor({ state: 'visible' });
    await expect(codeField.getAttribute('autocomplete')).resolves.toBe('one-time-code');
    await expect(codeField.getAttribute('inputmode')).resolves.toBe('numeric');
    await expect(page.evaluate('document.activeElement.id')).resolves.toBe('cg-code');
    await expect(page.getByRole('button', { name: /Send a new code in \d+ s/ }).isDisabled()).resolves.toBe(true);
    await screenshot(page, 'login-code-mobile');

    await page.keyboard.type('000000');
    await page.keyboard.press('Enter');
    await expect(page.getByRole('alert').textContent()).resolves.toBe('That code is not right. 4 more tries.');
    await page.keyboard.press('Control+A');
    await page.keyboard.type(gateway.sms.lastCodeFor(phone));
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'You are signed in' }).waitFor();
    const claims = JSON.parse((await page.locator('#cg-claims').textContent())!) as Record<string, unknown>;
    expect(claims).toMatchObject({ phone_number: phone, phone_number_verified: true, amr: ['sms'], iss: gateway.config.JWT_ISSUER });
    await expect(page.locator('#cg-who').textContent()).resolves.toMatch(new RegExp(`^Signed in as \\${phone} · User id: [0-9a-f]{24}$`));
    await screenshot(page, 'login-signed-in-mobile');

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Phone number').waitFor({ state: 'visible' });
    const session = await gateway.database.models.Session.findById(String(claims.sid)).lean();
    expect(session?.revokedReason).toBe('logout');
    await context.close();
  });

  it('speaks the language of ui_locales, then of Accept-Language, and switches on request; the SMS follows', async () => {
    const context = await newContext(browser, { locale: 'pt-BR' });
    const page = await context.newPage();
    await page.goto((await authorizationRequest(config, callbackUri, { ui_locales: 'hi-IN en' })).url.href);
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Acme Web में साइन इन करें');
    await expect(page.locator('html').getAttribute('lang')).resolves.toBe('hi');
    await screenshot(page, 'login-hindi-desktop');

    await page.goto((await authorizationRequest(config, callbackUri)).url.href);
    await expect(page.getByRole('button', { name: 'Enviar código' }).isVisible()).resolves.toBe(true);

    await page.getByRole('link', { name: 'Español' }).click();
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Inicia sesión en Acme Web');
    // The switch keeps the sign-in going: the page still completes the authorization.
    const phone = uniquePhone();
    await page.getByLabel('Número de teléfono').fill(phone);
    await page.getByRole('button', { name: 'Enviar código' }).click();
    await page.getByLabel('Código', { exact: true }).waitFor({ state: 'visible' });
    // The SMS speaks the page's language, and ends with the line WebOTP reads.
    const code = gateway.sms.lastCodeFor(phone);
    expect(gateway.sms.sent.at(-1)!.text).toBe(`Tu código de Acme ID es ${code}. Caduca en 5 minutos. No lo compartas con nadie.\n\n@${new URL(gateway.issuer).host} #${code}`);
    await page.getByLabel('Código', { exact: true }).fill(gateway.sms.lastCodeFor(phone));
    await page.getByRole('button', { name: 'Entrar' }).click();
    await page.waitForURL((url) => url.href.startsWith(callbackUri));
    await context.close();
  });

  it('shows the desktop page with the brand, and says why a code cannot be sent', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    await page.goto((await authorizationRequest(config, callbackUri)).url.href);
    await expect(page.locator('.product').textContent()).resolves.toBe('Acme ID');
    await expect(page.evaluate("getComputedStyle(document.querySelector('button.primary')).backgroundColor")).resolves.toBe('rgb(109, 40, 217)');
    await screenshot(page, 'login-phone-desktop');

    await page.getByLabel('Phone number').fill('12');
    await page.getByRole('button', { name: 'Send code' }).click();
    await expect(page.getByRole('alert').textContent()).resolves.toBe('That does not look like a phone number. Check the country and the number.');

    const phone = uniquePhone();
    await sendCode(page, phone);
    await page.getByRole('button', { name: 'Use a different number' }).click();
    await page.getByLabel('Phone number').fill(phone);
    await page.getByRole('button', { name: 'Send code' }).click();
    await expect(page.getByRole('alert').textContent()).resolves.toMatch(/^Too many tries\. Wait \d+ seconds and try again\.$/);
    await context.close();
  });

  it('asks a third-party app’s permission, and Deny sends access_denied back to the app', async () => {
    const partner = await discover(gateway, 'thirdParty');
    const redirect = gateway.clients.thirdParty.redirect_uris[0]!;
    const context = await newContext(browser);
    const page = await context.newPage();
    await page.goto((await authorizationRequest(partner, redirect)).url.href);
    const phone = uniquePhone();
    await sendCode(page, phone);
    await page.getByLabel('Code', { exact: true }).fill(gateway.sms.lastCodeFor(phone));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Partner Tools wants to:' }).waitFor();
    await expect(page.getByRole('listitem').allTextContents()).resolves.toEqual(['Know who you are on Acme ID', 'See your phone number', 'See your Telegram name and username', 'Keep you signed in']);
    await screenshot(page, 'consent-desktop');
    await page.getByRole('button', { name: 'Deny' }).click();
    await page.waitForURL((url) => url.href.startsWith(redirect));
    expect(new URL(page.url()).searchParams.get('error')).toBe('access_denied');

    await page.goto((await authorizationRequest(partner, redirect)).url.href);
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL((url) => url.href.startsWith(redirect));
    expect(new URL(page.url()).searchParams.get('code')).toBeTruthy();
    await context.close();
  });

  it('tells the person when the sign-in attempt has expired under the page, instead of asking for a new code', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    await page.goto((await authorizationRequest(config, callbackUri)).url.href);
    const before = gateway.clock.now();
    gateway.clock.advance(2 * 3600);
    try {
      await page.getByLabel('Phone number').fill(uniquePhone());
      await page.getByRole('button', { name: 'Send code' }).click();
      await expect(page.getByRole('alert').textContent()).resolves.toBe('This sign-in attempt has expired. Go back to the app and start again.');
      await page.reload();
      await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Something is not right');
      await expect(page.getByText('This sign-in attempt has expired or was already finished. Go back to the app and start again.').isVisible()).resolves.toBe(true);
    } finally {
      gateway.clock.set(before);
    }
    await context.close();
  });

  it('serves its script and styles as files and no inline script', async () => {
    const page = await fetch(`${gateway.issuer}/login`);
    const html = await page.text();
    expect(html).not.toMatch(/<script(?![^>]*(src="\/login\/assets\/login\.js"|type="application\/json"))/);
    expect(html).not.toMatch(/ style=/);
    const script = await fetch(`${gateway.issuer}/login/assets/login.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect((await fetch(`${gateway.issuer}/login/assets/..%2Fapi.ts`)).status).toBe(404);
  });
});
