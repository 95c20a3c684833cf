"""The screens' words, in every language they speak (English and French).

The live streams carry keys (``appliance.screens.lane``); the pages look the words up in
the catalog of the chosen language, which the server renders into the page. Every
catalog has exactly the same keys (a test checks), and ``{seat}``, ``{us_hours}`` and
``{other_days}`` are the only placeholders.
"""

from __future__ import annotations

DEFAULT_LANGUAGE = "en"

EN: dict[str, str] = {
    "lang_name": "English",
    "display_title": "Boarding gate",
    "agent_title": "Agent station",
    "overview_title": "Gates overview",
    "privacy_title": "Your photo and your privacy",
    "privacy_link": "Privacy notice · opt out",
    "privacy_short": (
        "This gate takes one photo of your face to confirm your boarding. It is encrypted, "
        "sent to the matching service and deleted from the gate at once. You may opt out: "
        "press the opt-out button or ask the agent."
    ),
    "back": "Back",
    "gate": "Gate",
    "flight": "Flight",
    "seat": "Seat {seat}",
    "cue_legend": "Dashed oval: where your face should be. Solid box: where it is now.",
    "no_camera_image": "No camera image is shown or stored: only the position of your face.",
    "reconnecting": "Connection lost, reconnecting…",
    # instructions for the traveller
    "scan_pass": "Please scan your boarding pass",
    "look_at_camera": "Look at the camera",
    "come_closer": "Come closer",
    "look_straight": "Look straight ahead",
    "step_to_centre": "Step to the centre",
    "one_at_a_time": "One person at a time, please",
    "hold_still": "Hold still",
    "proceed": "Please proceed",
    "see_agent": "Please see the agent",
    "manual_check": "Manual document check: please see the agent",
    "lane_closed": "This lane is closed",
    # the privacy notice
    "privacy_what_title": "What is captured",
    "privacy_what": (
        "When you step up, the camera takes a photo of your face. Nothing else is captured. "
        "This screen never shows the camera image: the outline is drawn from the position "
        "of your face only."
    ),
    "privacy_where_title": "Where it goes",
    "privacy_where": (
        "The photo is encrypted on the gate and sent over an encrypted connection to the "
        "matching service, which compares it with the photos of this flight's travellers "
        "and answers only whether you may board."
    ),
    "privacy_purge_title": "How long it is kept",
    "privacy_purge": (
        "The gate deletes its copy at once, whatever the answer: no photo is ever stored on "
        "the gate. The matching service keeps photos of U.S. citizens for at most "
        "{us_hours} hours and those of other travellers for up to {other_days} days."
    ),
    "privacy_optout_title": "How to opt out",
    "privacy_optout": (
        "You do not have to use the camera. Press the opt-out button on the gate, or tell "
        "the gate agent: no photo is taken and the agent checks your documents by hand."
    ),
    # agent station
    "agent_id": "Agent id",
    "credential": "PIN or badge",
    "sign_in": "Sign in",
    "sign_out": "Sign out",
    "signed_in_as": "Signed in as",
    "refused_wrong_credential": "Wrong agent id or PIN",
    "refused_locked": "Too many attempts: try again later",
    "refused_malformed": "Enter your agent id and a PIN of digits, or scan your badge",
    "refused_not_configured": "This kind of sign-in is not set up on this gate",
    "refused_expired": "This badge has expired",
    "refused_throttled": "Too many failed sign-ins at this gate: wait a minute",
    "lane": "Lane",
    "step": "Step",
    "reason": "Reason",
    "traveller": "Traveller",
    "name": "Name",
    "seat_label": "Seat",
    "pass_check": "Boarding pass",
    "counters": "Counters",
    "alerts": "Alerts",
    "no_alerts": "No alerts",
    "nobody": "Nobody at the gate",
    "actions": "Actions",
    "release": "Release the gate",
    "cancel": "Cancel this traveller",
    "action_reason": "Reason",
    "action_done": "Done",
    "action_refused": "Not possible now",
    "last_action": "Last action",
    "overview_link": "All gates",
    "agent_link": "This gate",
    "unreachable": "Not reachable",
    # lane states
    "phase_ready": "Ready",
    "phase_capturing": "Capturing",
    "phase_verifying": "Verifying",
    "phase_granted": "Open: traveller passing",
    "phase_agent_released": "Released by agent",
    "phase_refer_to_agent": "Referred to agent",
    "phase_manual_check": "Manual document check",
    "phase_out_of_service": "Out of service",
    # the traveller's step
    "step_waiting": "Waiting for the next traveller",
    "step_capturing": "Photo being taken",
    "step_verifying": "Waiting for the match",
    "step_passing": "Walking through",
    "step_with_agent": "Waiting for you",
    "step_out_of_service": "Gate out of service",
    # referral reasons (never a score or an image)
    "referral_no_match": "Face does not match the boarding pass holder",
    "referral_not_on_flight": "Not found among this flight's travellers",
    "referral_image_unusable": "The matching service could not use the photo",
    "referral_no_usable_face": "No usable photo could be taken",
    "referral_verdict_timeout": "No answer from the matching service in time",
    "referral_matcher_unavailable": "Matching service unavailable",
    "referral_door_held_open": "Door held open",
    "referral_gate_error": "Gate error",
    "referral_opted_out": "Traveller opted out: check documents by hand",
    "referral_wrong_flight": "Boarding pass for another flight",
    "referral_wrong_date": "Boarding pass for another date",
    "referral_wrong_airport": "Boarding pass for another airport",
    "referral_already_boarded": "This boarding pass has already boarded",
    "referral_not_checked_in": "Boarding pass without check-in",
    # alerts
    "alert_matcher_down": "Matching service down",
    "alert_camera_stalled": "Camera stalled",
    "alert_mcu_link_lost": "Gate controller link lost",
    "alert_ledger_not_durable": "Purge ledger not durable",
    "alert_already_boarded": "Already boarded",
    "alert_two_faces": "Two faces in view",
    # counters
    "count_boarded": "Boarded",
    "count_referred": "Referred",
    "count_opt_outs": "Opt-outs",
    "count_manual_checks": "Manual checks",
    # agent reason codes
    "reason_documents_checked": "Documents checked by hand",
    "reason_identity_confirmed": "Identity confirmed by the agent",
    "reason_assisted_boarding": "Assisted boarding",
    "reason_traveller_left": "Traveller left the lane",
    "reason_not_boarding": "Not boarding this flight",
    "reason_start_again": "Start again",
    "pass_ok": "Checks out",
    "pass_wrong_flight": "Another flight",
    "pass_wrong_date": "Another date",
    "pass_wrong_airport": "Another airport",
    "pass_already_boarded": "Already boarded",
    "pass_not_checked_in": "Not checked in",
}

FR: dict[str, str] = {
    "lang_name": "Français",
    "display_title": "Porte d’embarquement",
    "agent_title": "Poste agent",
    "overview_title": "Vue des portes",
    "privacy_title": "Votre photo et votre vie privée",
    "privacy_link": "Confidentialité · refuser la photo",
    "privacy_short": (
        "Cette porte prend une photo de votre visage pour confirmer votre embarquement. Elle "
        "est chiffrée, envoyée au service de comparaison et effacée aussitôt de la porte. "
        "Vous pouvez refuser : appuyez sur le bouton de refus ou adressez-vous à l’agent."
    ),
    "back": "Retour",
    "gate": "Porte",
    "flight": "Vol",
    "seat": "Siège {seat}",
    "cue_legend": ("Ovale en pointillés : où placer votre visage. Cadre plein : où il se trouve."),
    "no_camera_image": (
        "Aucune image de la caméra n’est affichée ni conservée : seulement la position de "
        "votre visage."
    ),
    "reconnecting": "Connexion perdue, reconnexion…",
    "scan_pass": "Veuillez scanner votre carte d’embarquement",
    "look_at_camera": "Regardez la caméra",
    "come_closer": "Approchez-vous",
    "look_straight": "Regardez droit devant vous",
    "step_to_centre": "Placez-vous au centre",
    "one_at_a_time": "Une personne à la fois, s’il vous plaît",
    "hold_still": "Ne bougez plus",
    "proceed": "Veuillez avancer",
    "see_agent": "Veuillez vous adresser à l’agent",
    "manual_check": "Contrôle manuel des documents : adressez-vous à l’agent",
    "lane_closed": "Cette file est fermée",
    "privacy_what_title": "Ce qui est capté",
    "privacy_what": (
        "Quand vous vous présentez, la caméra prend une photo de votre visage. Rien d’autre "
        "n’est capté. Cet écran n’affiche jamais l’image de la caméra : le contour est "
        "tracé à partir de la seule position de votre visage."
    ),
    "privacy_where_title": "Où elle va",
    "privacy_where": (
        "La photo est chiffrée sur la porte et envoyée par une connexion chiffrée au service "
        "de comparaison, qui la compare aux photos des voyageurs de ce vol et répond "
        "seulement si vous pouvez embarquer."
    ),
    "privacy_purge_title": "Combien de temps elle est gardée",
    "privacy_purge": (
        "La porte efface sa copie aussitôt, quelle que soit la réponse : aucune photo n’est "
        "jamais conservée sur la porte. Le service de comparaison garde les photos des "
        "citoyens américains au plus {us_hours} heures et celles des autres voyageurs "
        "jusqu’à {other_days} jours."
    ),
    "privacy_optout_title": "Comment refuser",
    "privacy_optout": (
        "Vous n’êtes pas obligé d’utiliser la caméra. Appuyez sur le bouton de refus de la "
        "porte ou dites-le à l’agent : aucune photo n’est prise et l’agent contrôle vos "
        "documents à la main."
    ),
    "agent_id": "Identifiant agent",
    "credential": "Code PIN ou badge",
    "sign_in": "Se connecter",
    "sign_out": "Se déconnecter",
    "signed_in_as": "Connecté en tant que",
    "refused_wrong_credential": "Identifiant ou code PIN incorrect",
    "refused_locked": "Trop de tentatives : réessayez plus tard",
    "refused_malformed": (
        "Saisissez votre identifiant et un code PIN en chiffres, ou scannez votre badge"
    ),
    "refused_not_configured": "Ce mode de connexion n’est pas configuré sur cette porte",
    "refused_expired": "Ce badge a expiré",
    "refused_throttled": "Trop d’échecs de connexion sur cette porte : attendez une minute",
    "lane": "File",
    "step": "Étape",
    "reason": "Motif",
    "traveller": "Voyageur",
    "name": "Nom",
    "seat_label": "Siège",
    "pass_check": "Carte d’embarquement",
    "counters": "Compteurs",
    "alerts": "Alertes",
    "no_alerts": "Aucune alerte",
    "nobody": "Personne à la porte",
    "actions": "Actions",
    "release": "Ouvrir la porte",
    "cancel": "Annuler ce voyageur",
    "action_reason": "Motif",
    "action_done": "Fait",
    "action_refused": "Impossible pour l’instant",
    "last_action": "Dernière action",
    "overview_link": "Toutes les portes",
    "agent_link": "Cette porte",
    "unreachable": "Injoignable",
    "phase_ready": "Prête",
    "phase_capturing": "Prise de photo",
    "phase_verifying": "Vérification",
    "phase_granted": "Ouverte : passage du voyageur",
    "phase_agent_released": "Ouverte par l’agent",
    "phase_refer_to_agent": "Renvoyé à l’agent",
    "phase_manual_check": "Contrôle manuel des documents",
    "phase_out_of_service": "Hors service",
    "step_waiting": "En attente du prochain voyageur",
    "step_capturing": "Photo en cours",
    "step_verifying": "En attente de la comparaison",
    "step_passing": "Passage en cours",
    "step_with_agent": "Vous attend",
    "step_out_of_service": "Porte hors service",
    "referral_no_match": "Le visage ne correspond pas au titulaire de la carte",
    "referral_not_on_flight": "Absent des voyageurs de ce vol",
    "referral_image_unusable": "Le service de comparaison n’a pas pu utiliser la photo",
    "referral_no_usable_face": "Aucune photo exploitable n’a pu être prise",
    "referral_verdict_timeout": "Pas de réponse du service de comparaison à temps",
    "referral_matcher_unavailable": "Service de comparaison indisponible",
    "referral_door_held_open": "Porte maintenue ouverte",
    "referral_gate_error": "Erreur de la porte",
    "referral_opted_out": "Le voyageur a refusé la photo : contrôler les documents à la main",
    "referral_wrong_flight": "Carte d’embarquement d’un autre vol",
    "referral_wrong_date": "Carte d’embarquement d’une autre date",
    "referral_wrong_airport": "Carte d’embarquement d’un autre aéroport",
    "referral_already_boarded": "Cette carte d’embarquement a déjà embarqué",
    "referral_not_checked_in": "Carte d’embarquement sans enregistrement",
    "alert_matcher_down": "Service de comparaison en panne",
    "alert_camera_stalled": "Caméra bloquée",
    "alert_mcu_link_lost": "Liaison avec le contrôleur de porte perdue",
    "alert_ledger_not_durable": "Registre des effacements non durable",
    "alert_already_boarded": "Déjà embarqué",
    "alert_two_faces": "Deux visages dans le champ",
    "count_boarded": "Embarqués",
    "count_referred": "Renvoyés",
    "count_opt_outs": "Refus de photo",
    "count_manual_checks": "Contrôles manuels",
    "reason_documents_checked": "Documents contrôlés à la main",
    "reason_identity_confirmed": "Identité confirmée par l’agent",
    "reason_assisted_boarding": "Embarquement assisté",
    "reason_traveller_left": "Le voyageur a quitté la file",
    "reason_not_boarding": "N’embarque pas sur ce vol",
    "reason_start_again": "Recommencer",
    "pass_ok": "Valide",
    "pass_wrong_flight": "Autre vol",
    "pass_wrong_date": "Autre date",
    "pass_wrong_airport": "Autre aéroport",
    "pass_already_boarded": "Déjà embarqué",
    "pass_not_checked_in": "Non enregistré",
}

CATALOGS: dict[str, dict[str, str]] = {"en": EN, "fr": FR}


def pick_language(requested: str | None) -> str:
    return requested if requested in CATALOGS else DEFAULT_LANGUAGE


__all__ = ["CATALOGS", "DEFAULT_LANGUAGE", "EN", "FR", "pick_language"]
