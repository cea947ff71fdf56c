# Test secrets per profile (tests, golden files, demo). Sourced by shell scripts.
SECRET_humanconnection='whsec_your_signing_secret'
SECRET_humiris='whsec_k9m2x4p7q1humiris'
SECRET_humcli='whsec_my_secret_key_123'
SECRET_humanos='your-signature-secret'
ENC_SECRET_humanos='eW91ci1lbmNyeXB0aW9uLXNlY3JldA=='
ENC_SALT_humanos='your-encryption-salt'
SECRET_aksita='aksita-webhook-secret'
SECRET_standard='whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
SECRET_svix='whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
SECRET_stripe='whsec_stripe_test_secret_4eC39HqLyjWDarjtT1'
SECRET_github="It's a Secret to Everybody"
