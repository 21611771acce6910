from train.train import main

if __name__ == "__main__":  # the face finder's worker processes import this module again
    main()
