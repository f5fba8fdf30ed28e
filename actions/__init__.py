"""Rasa custom actions of 警民通 (served by `rasa run actions --actions actions`).

- `forms.py`   form validation and slot normalisation
- `intake.py`  submitting intakes, hand-offs, cancellation, fallback
- `community.py` 我的社区 (community, warning topics, mobile with consent) and 退订
- `records.py` the bridge to the domain layer (cases, tickets, residents' settings)
- `parsing.py` pure text helpers (money, time, numbers, keywords)
- `fallback.py` the two-stage fallback's question in Chinese
"""

from actions.community import (  # noqa: F401
    ActionAskHomeCommunity,
    ActionAskMobileConsent,
    ActionCancelCommunity,
    ActionStartCommunity,
    ActionSubmitCommunity,
    ActionSubscribeWarnings,
    ActionUnsubscribeWarnings,
    ValidateCommunityForm,
)
from actions.fallback import ActionDefaultAskAffirmation  # noqa: F401
from actions.forms import (  # noqa: F401  (rasa-sdk registers Action subclasses on import)
    ValidateDogForm,
    ValidateEmergencyForm,
    ValidateFraudForm,
    ValidateLegalForm,
    ValidateNoiseForm,
)
from actions.intake import (  # noqa: F401
    ActionCancelIntake,
    ActionDefaultFallback,
    ActionEmergencyAlert,
    ActionHandoff,
    ActionSubmitDog,
    ActionSubmitEmergency,
    ActionSubmitFraud,
    ActionSubmitLegal,
    ActionSubmitNoise,
)
