# hpoctl.bash: bash completion for hpoctl (installed as
# $datadir/bash-completion/completions/hpoctl). Completes commands, options
# and study names (from `hpoctl studies`, with the --url and --token given
# on the command line). Self-contained: needs no bash-completion helpers.

_hpoctl_studies()
{
    local i url=() tok=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            --url) url=(--url "${COMP_WORDS[i + 1]}") ;;
            --url=*) url=("${COMP_WORDS[i]}") ;;
            --token) tok=(--token "${COMP_WORDS[i + 1]}") ;;
            --token=*) tok=("${COMP_WORDS[i]}") ;;
        esac
    done
    "${COMP_WORDS[0]}" "${url[@]}" "${tok[@]}" studies 2>/dev/null | \
        while read -r name _; do
            [[ $name != NAME ]] && printf '%s\n' "$name"
        done
}

_hpoctl()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=
    local commands="studies study ask tell report trials best pareto enqueue attrs run backup help"
    local global="--url --token --json --help --version"
    local cmd= sub= i npos=0 word
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    COMPREPLY=()

    # Everything after `run ... --` is the command being run: complete files.
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        case $word in
            --) [[ $cmd == run ]] && { COMPREPLY=($(compgen -c -f -- "$cur" | sort -u)); return 0; } ;;
            --url|--token|--state|-f|--file|-n|-j|--timeout|--max-failures|--progress|-p|--param|--attr|--unset|--value|--constraint|--objective|--feasible)
                ((i++)) ;;
            -*) ;;
            *)
                if [[ -z $cmd ]]; then
                    cmd=$word
                else
                    ((npos++))
                    [[ $cmd == study && $npos == 1 ]] && sub=$word
                fi
                ;;
        esac
    done

    case $prev in
        --url) COMPREPLY=($(compgen -W "http://127.0.0.1:8080" -- "$cur")); return 0 ;;
        --token|-n|-j|--timeout|--max-failures|--progress|--attr|--unset|--value|--constraint) return 0 ;;
        --state) COMPREPLY=($(compgen -W "waiting running complete pruned failed" -- "$cur")); return 0 ;;
        --feasible) COMPREPLY=($(compgen -W "true false" -- "$cur")); return 0 ;;
        --objective) return 0 ;;
        -f|--file) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
        -p|--param) return 0 ;;
    esac

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return 0
    fi

    local opts=""
    case $cmd in
        trials) opts+=" --state --feasible --csv" ;;
        tell) opts+=" --failed --pruned --value --constraint" ;;
        study) [[ $sub == create ]] && opts+=" -f --objective --constraint" ;;
        enqueue) opts+=" --param --attr" ;;
        attrs) opts+=" --unset" ;;
        run) opts+=" -n -j --timeout --max-failures --progress --" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts $global" -- "$cur"))
        return 0
    fi

    case $cmd in
        help)
            ((npos == 0)) && COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
        study)
            if ((npos == 0)); then
                COMPREPLY=($(compgen -W "create show delete" -- "$cur"))
            elif ((npos == 1)) && [[ $sub == show || $sub == delete ]]; then
                COMPREPLY=($(compgen -W "$(_hpoctl_studies)" -- "$cur"))
            fi
            ;;
        backup)
            ((npos == 0)) && COMPREPLY=($(compgen -f -- "$cur")) ;;
        ask|tell|report|trials|best|pareto|enqueue|attrs|run)
            ((npos == 0)) && COMPREPLY=($(compgen -W "$(_hpoctl_studies)" -- "$cur")) ;;
    esac
    return 0
}

complete -F _hpoctl hpoctl
