// The hosted login page's only script. Plain browser JavaScript, no framework: it moves between the page's
// sections and calls the page API (data-api on <main>). Every refusal of the API becomes a sentence from the
// page's texts; every state change is announced through the aria-live regions.
(function () {
  'use strict';
  var root = document.getElementById('cg');
  if (!root) return;
  var texts = JSON.parse(document.getElementById('cg-texts').textContent || '{}');
  var api = root.dataset.api || '';
  var view = root.dataset.view || 'login';
  var $ = function (id) { return document.getElementById(id); };

  function t(key, values) {
    var template = texts[key] || key;
    return template.replace(/\{(\w+)\}/g, function (whole, name) {
      return values && name in values ? String(values[name]) : whole;
    });
  }

  function show(id, visible) {
    var element = $(id);
    if (element) element.hidden = !visible;
  }

  function setError(message) {
    var box = $('cg-error');
    if (!box) return;
    box.textContent = message || '';
    box.hidden = !message;
  }

  function setStatus(message) {
    var status = $('cg-status');
    if (status) status.textContent = message || '';
  }

  // What a refusal of the API means for the person in front of the page.
  function sentenceFor(body, status) {
    // The sign-in attempt itself is gone (the OpenID request expired): no new code helps, the app must start again.
    if (body && body.reason === 'session_expired') return t('err_session_expired');
    var code = body && body.error;
    switch (code) {
      case 'invalid_code':
        return typeof body.attemptsRemaining === 'number' && body.attemptsRemaining > 0
          ? t('err_invalid_code', { attempts: body.attemptsRemaining })
          : t('err_invalid_code_last');
      case 'expired': return t('err_expired');
      case 'too_many_attempts': return t('err_too_many_attempts');
      case 'rate_limited': return t('err_rate_limited', { seconds: body.retryAfter || 30 });
      case 'country_not_allowed': return t('err_country_not_allowed');
      case 'delivery_failed': return t('err_delivery_failed');
      case 'invalid_phone': return t('err_invalid_phone');
      case 'channel_unavailable': return t('err_channel_unavailable');
      case 'not_found': return t('err_not_found');
      case 'user_blocked': return t('err_user_blocked');
      default: return status === 0 ? t('err_network') : t('err_generic');
    }
  }

  function call(method, path, body, bearer) {
    var headers = { accept: 'application/json' };
    if (body) headers['content-type'] = 'application/json';
    if (bearer) headers.authorization = 'Bearer ' + bearer;
    return fetch(api + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined, credentials: 'same-origin' })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (json) {
          if (!response.ok) {
            var error = new Error(sentenceFor(json, response.status));
            error.body = json;
            throw error;
          }
          return json;
        });
      }, function () {
        throw new Error(t('err_network'));
      });
  }

  function busy(button, on) {
    if (!button) return;
    button.disabled = on;
    button.setAttribute('aria-busy', on ? 'true' : 'false');
  }

  // The sign-in is complete: an OIDC request continues at the provider; a direct visit shows who signed in.
  function finish(next) {
    if (next.redirectTo) {
      setStatus(t('continuing'));
      window.location.assign(next.redirectTo);
      return;
    }
    var signedIn = next.signedIn;
    ['cg-intro', 'cg-phone-step', 'cg-code-step', 'cg-chat-step', 'cg-chat-choices', 'cg-divider', 'cg-restart'].forEach(function (id) { show(id, false); });
    $('cg-title').textContent = t('signed_in');
    var user = signedIn.user || {};
    $('cg-who').textContent = t('signed_in_as', { who: user.phone || (user.telegram && (user.telegram.username || user.telegram.firstName)) || user.id }) + ' · ' + t('user_id') + ': ' + user.id;
    $('cg-claims').textContent = JSON.stringify(signedIn.claims, null, 2);
    show('cg-done', true);
    setStatus(t('signed_in'));
    $('cg-title').focus();
    var signout = $('cg-signout');
    signout.onclick = function () {
      fetch('/auth/logout', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken: signedIn.refreshToken }) })
        .finally(function () { window.location.reload(); });
    };
  }

  // ---- phone and code ----
  var challenge = null;
  var resendTimer = null;

  function startCountdown(seconds) {
    var button = $('cg-resend');
    if (!button) return;
    clearInterval(resendTimer);
    var left = seconds;
    var tick = function () {
      if (left <= 0) {
        clearInterval(resendTimer);
        button.disabled = false;
        button.textContent = t('resend');
        return;
      }
      button.disabled = true;
      button.textContent = t('resend_in', { seconds: left });
      left -= 1;
    };
    tick();
    resendTimer = setInterval(tick, 1000);
  }

  var webOtp = null;
  function listenForWebOtp() {
    // Chrome on Android reads the code from an SMS that ends with "@host #code": fill it in and sign in.
    if (!('OTPCredential' in window) || !navigator.credentials) return;
    if (webOtp) webOtp.abort();
    webOtp = new AbortController();
    navigator.credentials.get({ otp: { transport: ['sms'] }, signal: webOtp.signal }).then(function (credential) {
      if (credential && credential.code) {
        $('cg-code').value = credential.code;
        $('cg-code-form').requestSubmit();
      }
    }).catch(function () { /* no code read: the person types it */ });
  }

  function requestCode(button) {
    var phone = $('cg-phone').value.trim();
    var country = $('cg-country').value;
    var channelSelect = $('cg-channel');
    var channel = channelSelect ? channelSelect.value : undefined;
    if (!phone) {
      setError(t('err_invalid_phone'));
      $('cg-phone').focus();
      return;
    }
    setError('');
    busy(button, true);
    call('POST', '/otp/request', { phone: phone, country: country || undefined, channel: channel, language: document.documentElement.lang })
      .then(function (sent) {
        challenge = sent;
        show('cg-phone-step', false);
        show('cg-code-step', true);
        $('cg-code-sent').textContent = t('code_sent', { phone: sent.phone, channel: t('via_' + sent.channel) });
        setStatus(t('code_sent', { phone: sent.phone, channel: t('via_' + sent.channel) }));
        startCountdown(sent.resendIn || 0);
        $('cg-code').value = '';
        $('cg-code').focus();
        listenForWebOtp();
      })
      .catch(function (error) { setError(error.message); })
      .finally(function () { busy(button, false); });
  }

  var phoneForm = $('cg-phone-form');
  if (phoneForm) {
    phoneForm.addEventListener('submit', function (event) {
      event.preventDefault();
      requestCode(phoneForm.querySelector('button[type=submit]'));
    });
    $('cg-code-form').addEventListener('submit', function (event) {
      event.preventDefault();
      var code = $('cg-code').value.replace(/\s+/g, '');
      var button = event.target.querySelector('button[type=submit]');
      if (!code || !challenge) return;
      setError('');
      busy(button, true);
      call('POST', '/otp/verify', { challengeId: challenge.challengeId, code: code })
        .then(function (result) {
          if (webOtp) webOtp.abort();
          finish(result);
        })
        .catch(function (error) {
          setError(error.message);
          var code = error.body && error.body.error;
          if (code === 'too_many_attempts' || code === 'expired' || code === 'not_found') $('cg-resend').disabled = false;
          $('cg-code').focus();
          $('cg-code').select();
          busy(button, false);
        });
    });
    $('cg-resend').addEventListener('click', function (event) { requestCode(event.target); });
    $('cg-change').addEventListener('click', function () {
      clearInterval(resendTimer);
      show('cg-code-step', false);
      show('cg-phone-step', true);
      setError('');
      $('cg-phone').focus();
    });
  }

  // ---- chats: a login intent confirmed in WhatsApp or Telegram ----
  var pollTimer = null;
  var intent = null;

  function stopPolling() {
    clearTimeout(pollTimer);
    pollTimer = null;
    intent = null;
  }

  function resetToStart() {
    stopPolling();
    show('cg-chat-step', false);
    show('cg-restart', false);
    show('cg-phone-step', true);
    show('cg-code-step', false);
    show('cg-chat-choices', true);
    show('cg-divider', true);
    setError('');
    setStatus('');
    $('cg-phone').focus();
  }

  function chatEnded(message) {
    stopPolling();
    show('cg-chat-step', false);
    show('cg-restart', true);
    setError(message);
    $('cg-restart-button').focus();
  }

  function poll() {
    if (!intent) return;
    var current = intent;
    call('GET', '/intents/' + encodeURIComponent(current.intentId), null, current.pollToken)
      .then(function (answer) {
        if (intent !== current) return;
        if (answer.status === 'approved') {
          stopPolling();
          finish(answer);
        } else if (answer.status === 'rejected') {
          chatEnded(t('chat_rejected'));
        } else if (answer.status === 'expired' || answer.status === 'consumed') {
          chatEnded(t('chat_expired'));
        } else {
          pollTimer = setTimeout(poll, 1500);
        }
      })
      .catch(function (error) {
        if (intent !== current) return;
        var body = error.body || {};
        if (body.reason === 'session_expired' || body.error === 'not_found' || body.error === 'unauthorized' || body.error === 'user_blocked') chatEnded(error.message);
        else pollTimer = setTimeout(poll, 3000);
      });
  }

  var coarse = window.matchMedia && window.matchMedia('(pointer: coarse)').matches;
  document.querySelectorAll('button[data-chat]').forEach(function (button) {
    button.addEventListener('click', function () {
      var chat = button.dataset.chat;
      setError('');
      busy(button, true);
      call('POST', '/intents', { chat: chat, language: document.documentElement.lang })
        .then(function (created) {
          intent = created;
          show('cg-phone-step', false);
          show('cg-code-step', false);
          show('cg-chat-choices', false);
          show('cg-divider', false);
          show('cg-chat-step', true);
          var link = $('cg-chat-link');
          link.href = created.link;
          link.textContent = t(chat === 'whatsapp' ? 'chat_open_whatsapp' : 'chat_open_telegram');
          // On a phone the link opens the app; on a computer the phone scans the QR code.
          var qr = $('cg-qr');
          qr.hidden = coarse || !created.qr;
          show('cg-chat-scan', !coarse && !!created.qr);
          if (created.qr) qr.src = created.qr;
          $('cg-chat-hint').textContent = chat === 'whatsapp' ? t('chat_whatsapp_code', { code: created.code }) : t('chat_telegram_tap');
          setStatus(t('chat_waiting'));
          link.focus();
          pollTimer = setTimeout(poll, 1500);
        })
        .catch(function (error) { setError(error.message); })
        .finally(function () { busy(button, false); });
    });
  });
  var cancel = $('cg-chat-cancel');
  if (cancel) cancel.addEventListener('click', resetToStart);
  var restart = $('cg-restart-button');
  if (restart) restart.addEventListener('click', resetToStart);

  // ---- Log in with Telegram: Telegram's OpenID Connect login approves a login intent, in this same browser ----
  // The browser leaves for Telegram and comes back to this page with ?telegram_login=approved|rejected|error; the
  // intent's id and poll token wait in this tab's sessionStorage meanwhile, and the page then polls as for the chats.
  var TELEGRAM_KEY = 'cg-telegram-login';
  var telegramButton = $('cg-telegram-login');
  if (telegramButton) {
    telegramButton.addEventListener('click', function () {
      setError('');
      busy(telegramButton, true);
      call('POST', '/intents', { chat: 'telegram_login', language: document.documentElement.lang })
        .then(function (created) {
          try {
            sessionStorage.setItem(TELEGRAM_KEY, JSON.stringify({ intentId: created.intentId, pollToken: created.pollToken, page: window.location.pathname }));
          } catch { /* no storage: the page says so when the browser comes back */ }
          setStatus(t('telegram_login_going'));
          window.location.assign(created.link);
        })
        .catch(function (error) { setError(error.message); busy(telegramButton, false); });
    });
  }

  function telegramSentence(outcome, code) {
    if (outcome === 'rejected') return t('telegram_login_cancelled');
    switch (code) {
      case 'access_denied': return t('telegram_login_denied');
      case 'expired': return t('chat_expired');
      case 'user_blocked': return t('err_user_blocked');
      case 'service_unavailable': return t('telegram_login_unavailable');
      default: return t('telegram_login_failed');
    }
  }

  var returned = new URLSearchParams(window.location.search);
  var telegramOutcome = returned.get('telegram_login');
  if (telegramOutcome && view === 'login' && $('cg-phone-step')) {
    var stored = null;
    try {
      stored = JSON.parse(sessionStorage.getItem(TELEGRAM_KEY) || 'null');
      sessionStorage.removeItem(TELEGRAM_KEY);
    } catch { stored = null; }
    var telegramError = returned.get('telegram_error');
    // The outcome leaves the address bar, so that reloading the page starts afresh.
    returned.delete('telegram_login');
    returned.delete('telegram_error');
    var rest = returned.toString();
    window.history.replaceState(null, '', window.location.pathname + (rest ? '?' + rest : ''));
    ['cg-phone-step', 'cg-chat-choices', 'cg-divider'].forEach(function (id) { show(id, false); });
    if (telegramOutcome === 'approved' && stored && stored.page === window.location.pathname) {
      setStatus(t('continuing'));
      intent = { intentId: stored.intentId, pollToken: stored.pollToken };
      poll();
    } else {
      chatEnded(telegramSentence(telegramOutcome, telegramError));
    }
  }

  // ---- consent ----
  function decide(path, button) {
    setError('');
    busy(button, true);
    call('POST', path, {})
      .then(function (result) { window.location.assign(result.redirectTo); })
      .catch(function (error) { setError(error.message); busy(button, false); });
  }
  if (view === 'consent') {
    $('cg-allow').addEventListener('click', function (event) { decide('/consent', event.target); });
    $('cg-deny').addEventListener('click', function (event) { decide('/abort', event.target); });
  }
})();
