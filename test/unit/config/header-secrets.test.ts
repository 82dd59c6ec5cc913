import { expect } from 'chai';
import { headerSecretsOf, loadConfig, secretsOf } from '../../../config/index.js';
import { createSecretMask } from '../../../src/util/secrets.js';

describe('OPENAI_CUSTOM_HEADERS: credential headers are secrets (a gateway echoed them into a stored trajectory)', () => {
  it('takes the values of headers whose names name a credential, with a Bearer token alone too, and leaves the others', () => {
    expect(headerSecretsOf('api-key: gw-CUSTOMHDR-SECRET-999\nx-tenant: team-42\n X-Auth-Token : tok_ABCDEFGH12 \nAuthorization: Bearer sk-abc-1234567890\nOcp-Apim-Subscription-Key: 0123456789abcdef\nno colon here')).to.deep.equal([
      'gw-CUSTOMHDR-SECRET-999',
      'tok_ABCDEFGH12',
      'Bearer sk-abc-1234567890',
      'sk-abc-1234567890',
      '0123456789abcdef',
    ]);
    expect(headerSecretsOf(undefined)).to.deep.equal([]);
  });

  it('masks them wherever the configuration\'s secrets are masked', () => {
    const config = loadConfig({ OPENAI_CUSTOM_HEADERS: 'api-key: gw-CUSTOMHDR-SECRET-999\nx-tenant: team-42' });
    const mask = createSecretMask(secretsOf(config));
    expect(mask('400: bad header api-key=gw-CUSTOMHDR-SECRET-999 for tenant team-42 — réessayez 🙏')).to.equal('400: bad header api-key=[redacted] for tenant team-42 — réessayez 🙏');
  });
});
